"""A vendor's questionnaire claims against the measured verdicts: where claims and reality differ.

Why a separate, pure function: the online report, the downloads and the tests must all mark a claim the same way.
The rule (one place): a claimed test that passed is "confirmed"; claimed and failed or errored is "contradicted"
(an error is the platform not completing the test, which does not support the claim); claimed but not run in
this profile, or skipped as not applicable, is "not tested". Tests the vendor did not claim are listed too: a pass
is "unclaimed pass" (reality better than the claim), anything else "not claimed". Claimed ids the catalogue does
not know are "not tested" with an empty title (the questionnaire refuses those; old rows may still hold some).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sampan.verify.results import Evaluation

__all__ = ["ClaimCheck", "STATUSES", "compare_claims", "catalogue_titles"]

STATUSES = ("confirmed", "contradicted", "not tested", "unclaimed pass", "not claimed")


@dataclass(frozen=True)
class ClaimCheck:
    """One test: what the vendor claimed, what was measured (a verdict, None when not run) and the mark."""

    test_id: str
    title: str
    claimed: bool
    measured: str | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def catalogue_titles() -> dict[str, str]:
    """Every catalogue test id and its title, in catalogue order (the questionnaire's choices)."""
    from sampan.verify.catalogue.registry import all_tests

    return {t.id: t.title for t in all_tests()}


def _mark(claimed: bool, verdict: str | None) -> str:
    if claimed:
        if verdict == "pass":
            return "confirmed"
        if verdict in ("fail", "error"):
            return "contradicted"
        return "not tested"
    return "unclaimed pass" if verdict == "pass" else "not claimed"


def compare_claims(claims: Mapping[str, bool], evaluation: Evaluation,
                   titles: Mapping[str, str] | None = None) -> list[ClaimCheck]:
    """Every claimed test, then every measured test nobody claimed; claimed ones first, each in catalogue order
    (measured order for the evaluation's own tests). `titles`: id -> title for claimed tests that did not run
    (default: the catalogue's)."""
    measured = {o.id: o for o in evaluation.outcomes}
    names = dict(titles) if titles is not None else catalogue_titles()
    order: dict[str, int] = {}
    for test_id in [*names, *measured]:  # catalogue order; tests it does not know after, in measured order
        order.setdefault(test_id, len(order))
    claimed_ids = sorted((t for t, v in claims.items() if v), key=lambda t: order.get(t, len(order)))
    out: list[ClaimCheck] = []
    for test_id in claimed_ids:
        outcome = measured.get(test_id)
        verdict = outcome.verdict if outcome is not None else None
        title = outcome.title if outcome is not None else names.get(test_id, "")
        out.append(ClaimCheck(test_id, title, True, verdict, _mark(True, verdict)))
    for outcome in evaluation.outcomes:
        if not claims.get(outcome.id):
            out.append(ClaimCheck(outcome.id, outcome.title, False, outcome.verdict, _mark(False, outcome.verdict)))
    return out
