"""A vendor's questionnaire claims against the measured verdicts: where claims and reality differ.

Why a separate, pure function: the online report, the downloads and the tests must all mark a claim the same way.
The rule (one place): a claimed test that passed is "confirmed"; claimed and failed or errored is "contradicted"
(an error is the platform not completing the test, which does not support the claim); claimed, run in this
profile and skipped as not applicable is "contradicted: not shown" (R17-PORTAL-9: the platform's own answers made
the test impossible, usually a capability its /info does not declare, so the claim is not supported; a neutral
mark would let a vendor tick every claim and leave the capabilities out of /info); claimed but not run by this
profile at all is "not tested" (nothing measured either way). `ClaimCheck.note` carries the skip's reason.
`is_contradiction(status)` is how a summary counts both contradicted marks together. Tests the vendor did not
claim are listed too: a pass is "unclaimed pass" (reality better than the claim), anything else "not claimed".
Claimed ids the catalogue does not know are "not tested" with an empty title (the questionnaire refuses those;
old rows may still hold some).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sampan.verify.results import Evaluation

__all__ = ["ClaimCheck", "NOT_SHOWN", "STATUSES", "compare_claims", "catalogue_titles", "is_contradiction"]

NOT_SHOWN = "contradicted: not shown"
STATUSES = ("confirmed", "contradicted", NOT_SHOWN, "not tested", "unclaimed pass", "not claimed")


def is_contradiction(status: str) -> bool:
    """True for both marks against the vendor: a failed claimed test, and one the platform made not applicable."""
    return status == "contradicted" or status.startswith("contradicted:")


@dataclass(frozen=True)
class ClaimCheck:
    """One test: what the vendor claimed, what was measured (a verdict, None when not run) and the mark."""

    test_id: str
    title: str
    claimed: bool
    measured: str | None
    status: str
    note: str = ""  # why a claimed test was not shown (the skip's message: "not applicable: the platform lacks dp")

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
        return NOT_SHOWN if verdict == "skip" else "not tested"
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
        status = _mark(True, verdict)
        note = outcome.message if outcome is not None and status == NOT_SHOWN else ""
        out.append(ClaimCheck(test_id, title, True, verdict, status, note))
    for outcome in evaluation.outcomes:
        if not claims.get(outcome.id):
            out.append(ClaimCheck(outcome.id, outcome.title, False, outcome.verdict, _mark(False, outcome.verdict)))
    return out
