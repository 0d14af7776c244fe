"""Per-request checks of a checks job (`run.workflow = "checks"`, `sampan.checks`) at a deployed party.

Threat model: a coordinator opens a checks job the party approved and then asks for something else: a training
request, PSI in a mode that reveals which ids match, or an exact release where the job announced DP.
`check_checks_request` refuses each, naming the rule (called from `sampan.deploy.allow_requests.check_request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sampan.deploy.allow_section import JobRefused

__all__ = ["check_checks_request"]


# a checks job (`sampan.checks`): its own kinds; a vertical one also the run keys and the five PSI steps
_CHECKS_KINDS = frozenset({"checks.schema", "checks.label", "checks.histogram"})
_CHECKS_VERTICAL_KINDS = frozenset({"checks.overlap", "vertical.hello", "vertical.peers", "psi.offer", "psi.accept",
                                    "psi.blind", "psi.respond", "psi.finish"})


def check_checks_request(party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """A checks job answers only its own kinds (the PSI steps in cardinality mode only, in a vertical job), and a
    release only with DP when the job announced it (the party's mod re-checks: `sampan.checks.privacy`)."""
    allowed = _CHECKS_KINDS | (_CHECKS_VERTICAL_KINDS if job.get("vertical") else frozenset())
    if kind not in allowed:
        raise JobRefused(party, "workflows", f"{kind!r} is not a request of a checks job")
    if kind.startswith("psi.") and meta.get("mode") != "cardinality":
        raise JobRefused(party, "workflows", f"{kind!r} in mode {meta.get('mode')!r}: a checks job counts the "
                         "common ids only (PSI mode 'cardinality')")
    if kind in ("checks.label", "checks.histogram", "checks.overlap") and "dp" in set(job.get("protections") or ()):
        if not isinstance(meta.get("dp"), Mapping):
            raise JobRefused(party, "require", f"{kind!r} carries no dp in a checks job that announced DP")
