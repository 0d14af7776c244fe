"""R-LAST-1: S-BACKDOOR counts a triggered row as backdoored only when both honest references call it bad, and one
reference was the platform's own four-party job (the four honest parties alone). That job has no verifier party, so
its export cannot be tied to a federation: a platform that recognises it (four parties, none the verifier's) and
exports the attacked model there leaves no counted row flipped. `DampedRiggedReference` lets a model-replacement
backdoor half through (49-82% attack success against honest references on seeds 16-18) and passed with 0% on
17-32 rows.

Fixed (`catalogue/backdoor_reference.py`): the verifier fits the honest references itself on the rows it planted at
the four honest parties (a pooled LR, and each party's own model trained as the job trains); the platform's
four-party job is gone. The rig has nothing left to rig: 41-84% attack success on 121-143 rows, fail (seeds 16-20).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R-LAST fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate  # noqa: E402
from _rlast_fakes import DampedRiggedReference  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")]


def test_a_rigged_four_party_reference_does_not_pass_a_backdoor() -> None:
    out = {o.id: o for o in evaluate(DampedRiggedReference(), ["S-BACKDOOR"], seed=16).outcomes}
    backdoor = out["S-BACKDOOR"]
    assert backdoor.verdict == "fail", backdoor.message
    assert backdoor.figures["attack_success_rate"] > 0.3, backdoor.message
    refs = backdoor.evidence["references"]
    assert set(refs["rows_each_calls_bad"]) == {"five_parties_clean", "pooled", "bank_a", "bank_d", "bank_e", "bank_b"}
    assert "verifier_fitted" in refs and "four_honest_parties" not in refs


def test_the_verifier_references_ignore_what_the_platform_exports_for_a_four_party_job() -> None:
    """No four-party job is submitted at all: the platform sees only five-party robust jobs."""
    backend = DampedRiggedReference()
    evaluate(backend, ["S-BACKDOOR"], seed=17)
    assert backend.specs and all(len(spec.features) == 5 for spec in backend.specs), \
        [sorted(spec.features) for spec in backend.specs]


def test_per_party_references_only_under_krum() -> None:
    """Under the mean (the weak platform declares no robust rule) every party's update is in the aggregate, so only
    the pooled fit joins the clean job: the per-party models would hide a partial backdoor there (results.md)."""
    from _r16_verdict_fakes import Recording

    out = {o.id: o for o in evaluate(Recording(), ["S-BACKDOOR"], seed=17).outcomes}
    backdoor = out["S-BACKDOOR"]
    assert backdoor.verdict == "fail", backdoor.message
    assert set(backdoor.evidence["references"]["rows_each_calls_bad"]) == {"five_parties_clean", "pooled"}
