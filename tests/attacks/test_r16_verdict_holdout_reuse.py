"""R16-VERDICT-12: F-EVALUATE posts the verifier's holdout *with its labels* to the platform, and later tests judge
on that same holdout (S-BYZANTINE's and S-BACKDOOR's AUC, the noniid/dropout floors). A platform with plain FedAvg
that exports, for every later job, a model fitted on those labelled rows survives the Byzantine party: the
"attacked" AUC is in-sample. Fixed: /evaluate and /predict get a platform party's own rows
(`BenchData.evaluation_rows`); the judging holdout never leaves the verifier when the platform exports its model.
A platform can still export a model fitted on the rows it holds (R16-VERDICT-4, left open)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, HoldoutLearner, evaluate, verdicts  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def _rows(table: object) -> set[tuple[float, ...]]:
    rows = getattr(table, "rows", None) or table["rows"]  # type: ignore[index]
    cols = getattr(table, "columns", None) or table["columns"]  # type: ignore[index]
    keep = [k for k, c in enumerate(cols) if c != "label"]
    return {tuple(round(float(r[k]), 9) for k in keep) for r in rows}


def test_the_judging_holdout_never_reaches_the_platform() -> None:
    from sampan.verify.catalogue.data import make_bench_data

    backend = HoldoutLearner()
    sent: list[object] = []
    predict = backend.predict

    def recording_predict(job_id: str, data: object) -> object:
        sent.append(data)
        return predict(job_id, data)  # type: ignore[arg-type]

    backend.predict = recording_predict  # type: ignore[method-assign]
    ev = evaluate(backend, ["F-PREDICT", "F-EVALUATE", "P-PREDICT-LATENCY"], seed=11)
    out = verdicts(ev)
    assert {out[t][0] for t in ("F-PREDICT", "F-EVALUATE")} == {"pass"}, out
    assert backend.seen is not None and sent
    holdout = _rows(make_bench_data(11, "german", SHARED).holdout_data())
    for table in [backend.seen, *sent]:
        assert not (_rows(table) & holdout), "holdout rows reached the platform"
