"""R16-VERDICT-2: the canary columns of S-MIA / S-DP-AUDIT-ONE-RUN are recognisable: they are all zeros in every
party the platform holds (and were named attr_<6 hex>, unlike the drawn columns). A platform with no DP at all that
keeps those columns' weights at their start passed both privacy tests while its real columns trained in the clear.

Fixed in `sampan.verify.catalogue.canaries`: every feature of the canary job (drawn columns too) gets an attr_<hex>
name and the columns are shuffled, so names and order tell nothing; the zeros cannot be hidden without drowning the
canaries, so the verifier checks the aggregate (`canary_trace`): its party's change to each included canary column
must show in the next global model beyond the term common to all of them. Freezing the canaries (at zero, or moving
them all by one common step) leaves it out: both tests fail with that reason; the export must equal the last global
model (`export_tie`), so freezing only the export fails too."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, CanaryFreezer, evaluate, verdicts  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


class CommonStepFreezer(CanaryFreezer):
    """Like `CanaryFreezer`, but each published model moves every frozen column by one common step (what the other
    parties' share of an included canary column looks like), so the canary weights are not simply constant."""

    def submit_job(self, project_id: str, spec: Any) -> Any:
        job = super().submit_job(project_id, spec)
        frozen = self.frozen(job.job_id)
        room = self.room(job.job_id)
        publish = room.publish

        def stepping_publish(**changes: Any) -> None:
            model = changes.get("model")
            if isinstance(model, dict) and "weights" in model:
                step = 1e-3 * int(model.get("round", 0))
                changes["model"] = {**model, "weights": [w + step if i in frozen else w
                                                         for i, w in enumerate(model["weights"])]}
            publish(**changes)

        room.publish = stepping_publish
        return job

    def model(self, job_id: str) -> Any:
        model = super().model(job_id)
        room = self.room(job_id)
        with room.cond:
            last = list(room.model.get("weights") or [])
        return model.model_copy(update={"coefficients": last[:-1]}) if last else model


@pytest.mark.parametrize("backend", [CanaryFreezer, CommonStepFreezer], ids=["frozen", "common-step"])
def test_dp_audit_is_not_passed_by_freezing_canary_like_columns(backend: type[CanaryFreezer]) -> None:
    platform = backend()
    ev = evaluate(platform, ["S-MIA", "S-DP-AUDIT-ONE-RUN"])
    out = verdicts(ev)
    # the platform claims epsilon = 1 and adds no noise: both must refute the claim
    assert out["S-DP-AUDIT-ONE-RUN"][0] == "fail", out
    assert out["S-MIA"][0] == "fail", out
    assert "canary columns" in out["S-MIA"][1] and "canary columns" in out["S-DP-AUDIT-ONE-RUN"][1], out
    trace = next(o.evidence["canary_trace"] for o in ev.outcomes if o.id == "S-MIA")
    assert trace["ignored_fraction"] > 0.9, trace
    # what the platform was told: every feature named attr_<6 hex>, drawn columns and canaries interleaved
    features = list(next(iter(platform.specs[-1].features.values())))
    assert all(f.startswith("attr_") and len(f) == 11 for f in features), features[:5]
    held = [r.data for regs in platform.parties.values() for r in regs.values()
            if r.operated_by == "platform" and r.data is not None and len(r.data.columns) == len(features) + 1]
    assert held, "the canary job's platform parties were not found"
    dense = [k for k, c in enumerate(features)  # the drawn columns: not all zero at the platform's parties
             if any(float(row[d.columns.index(c)] or 0.0) != 0.0 for d in held for row in d.rows)]
    assert dense and min(dense) < len(features) - len(features) // 4 and max(dense) > len(features) // 4, dense
