"""Per-request checks of a checks job (`run.workflow = "checks"`, `sampan.checks`) at a deployed party.

Threat model: a coordinator opens a checks job the party approved and then asks for something else: a training
request, PSI in a mode that reveals which ids match, an exact release where the job announced DP, a release at
another epsilon than the job's (R14-CHECKS-2), a histogram with other bins, columns or bounds than the job's or any
histogram in a vertical job (R14-CHECKS-4), or a release with meta keys it does not use (a fresh ``peer`` on a
label request would otherwise open a new answer: R14-CHECKS-1). `check_checks_request` refuses each, naming the
rule (called from `sampan.deploy.allow_requests.check_request`); the party's own mod and handlers re-check
(`sampan.checks.privacy`, `sampan.checks.terms`), with its declared schema's bounds too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sampan.checks.terms import check_histogram, check_release_epsilon
from sampan.deploy.allow_section import JobRefused
from sampan.privacy.party_policy import PolicyRefused

__all__ = ["check_checks_request"]


# a checks job (`sampan.checks`): its own kinds; a vertical one also the run keys and the five PSI steps
_CHECKS_KINDS = frozenset({"checks.schema", "checks.label"})
_CHECKS_HORIZONTAL_KINDS = frozenset({"checks.histogram"})  # a vertical job compares no histograms
_CHECKS_VERTICAL_KINDS = frozenset({"checks.overlap", "vertical.hello", "vertical.peers", "psi.offer", "psi.accept",
                                    "psi.blind", "psi.respond", "psi.finish", "psi.part", "psi.pull"})


# the meta keys the checks workflow sends with each release (`sampan.checks.workflow`)
_META_KEYS = {"checks.schema": frozenset(), "checks.label": frozenset({"dp"}),
              "checks.histogram": frozenset({"dp", "columns", "bins"}), "checks.overlap": frozenset({"dp", "peer"})}


def check_checks_request(party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """A checks job answers only its own kinds (the PSI steps in cardinality mode only, in a vertical job), and a
    release only with DP when the job announced it (the party's mod re-checks: `sampan.checks.privacy`)."""
    allowed = _CHECKS_KINDS | (_CHECKS_VERTICAL_KINDS if job.get("vertical") else _CHECKS_HORIZONTAL_KINDS)
    if kind not in allowed:
        why = " (a vertical one compares no histograms)" if job.get("vertical") and kind == "checks.histogram" else ""
        raise JobRefused(party, "workflows", f"{kind!r} is not a request of a checks job{why}")
    if kind in _META_KEYS:
        unexpected = sorted(set(meta) - _META_KEYS[kind])
        if unexpected:
            raise JobRefused(party, "workflows", f"{kind!r} carries meta keys {unexpected} a checks job never sends")
    if kind.startswith("psi.") and meta.get("mode") != "cardinality":
        raise JobRefused(party, "workflows", f"{kind!r} in mode {meta.get('mode')!r}: a checks job counts the "
                         "common ids only (PSI mode 'cardinality')")
    if kind in ("checks.label", "checks.histogram", "checks.overlap") and "dp" in set(job.get("protections") or ()):
        if not isinstance(meta.get("dp"), Mapping):
            raise JobRefused(party, "require", f"{kind!r} carries no dp in a checks job that announced DP")
    try:
        if kind in ("checks.label", "checks.histogram", "checks.overlap") and isinstance(meta.get("dp"), Mapping):
            epsilon = meta["dp"].get("epsilon")
            if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
                raise PolicyRefused(f"{kind!r} meta.dp.epsilon must be a number, got {epsilon!r}")
            check_release_epsilon(party, kind, float(epsilon), job)
        if kind == "checks.histogram":
            check_histogram(party, job, meta.get("columns"), meta.get("bins"))
    except PolicyRefused as exc:
        raise JobRefused(party, "checks", str(exc)) from None
