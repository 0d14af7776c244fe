"""Issue 16, the paired AUC rule everywhere: F-AUC-VERTICAL, F-NONIID, F-DROPOUT-RESUME's AUC judge and
P-TIME-TO-AUC's "reached" use the paired DeLong non-inferiority rule of F-AUC-HORIZONTAL (`common.compare_to_pooled`).

Each is run through the catalogue's own function on real German-credit draws with a stub platform that exports a
model the test fitted (the pattern of test_catalogue_auc_noninferior.py): an honest model passes every draw, a
degraded one (the honest model with its strongest half of coefficients zeroed, 0.12-0.19 AUC below the pooled one)
fails every draw, and a platform with no scores (only
/evaluate) is judged by the bare margin, which the message says. Seeds are fixed test data, not key material."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.verify.catalogue import functional, performance
from sampan.verify.catalogue.base import Context, Result
from sampan.verify.catalogue.common import judge_auc_noninferior, vertical_qualify
from sampan.verify.catalogue.data import BenchData, make_bench_data
from sampan.verify.catalogue.http import Reply
from sampan.verify.catalogue.jobs import horizontal_spec, run_job
from sampan.verify.datasets import fit_lr
from sampan.verify.thresholds import value

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")
SEEDS = range(6)


class ExportsThisModel:
    """A stub platform whose jobs succeed at once and export the given model (`linear.v1`); ``model=None``: no
    export and no /predict, only /evaluate answering ``evaluate_auc``."""

    url = "http://127.0.0.1:9"

    def __init__(self, model: dict[str, Any] | None, evaluate_auc: float = 0.0,
                 rounds: list[dict[str, Any]] | None = None) -> None:
        self.model, self.evaluate_auc, self.rounds = model, evaluate_auc, rounds or []

    def call(self, method: str, path: str, body: Any = None, **_: Any) -> Reply:
        if path.endswith("/model"):
            if self.model is None:
                return Reply(404, {"error": {"code": "not_found", "message": "no export"}}, {})
            return Reply(200, self.model, {})
        if path.endswith("/results"):
            return Reply(200, {"rounds": self.rounds, "metrics": {}}, {})
        if path.endswith("/evaluate"):
            return Reply(200, {"metrics": {"auc": self.evaluate_auc}, "rows": len(body["rows"])}, {})
        return Reply(200, {"project_id": "p1", "job_id": "j1", "state": "succeeded", "round": 15, "rounds": 15}, {})

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        return self.call(method, path, body).body


def _ctx(data: BenchData, api: ExportsThisModel, capabilities: list[str]) -> Context:
    info = {"capabilities": capabilities, "claims": {}}
    return Context(api=api, info=info, data=data, profile="standard")  # type: ignore[arg-type]


def _model(data: BenchData, rows: np.ndarray, columns: list[str], names: list[str] | None = None) -> dict[str, Any]:
    coef, intercept = fit_lr(data.table.cols(columns)[rows], data.table.y[rows].astype(np.float64))
    return {"format": "linear.v1", "features": names or list(columns), "coefficients": coef.tolist(),
            "intercept": intercept}


def _crippled(model: dict[str, Any]) -> dict[str, Any]:
    """The model with its larger half of coefficients zeroed: it lost its strongest columns (0.12-0.19 AUC below
    the pooled model on draws 0-5, beyond every cap)."""
    coef = np.asarray(model["coefficients"])
    coef[np.argsort(-np.abs(coef))[: coef.size // 2]] = 0.0
    return {**model, "coefficients": coef.tolist()}


def _horizontal(data: BenchData, rows: np.ndarray, *, crippled: bool = False) -> Context:
    model = _model(data, rows, data.columns)
    return _ctx(data, ExportsThisModel(_crippled(model) if crippled else model), ["horizontal", "model_export"])


def _eighty(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([p[: int(0.8 * p.size)] for p in parts])  # 80% of each party, as Sampan trains


def _all_seeds(judge: Any) -> tuple[dict[int, Result], dict[int, Result]]:
    honest, degraded = {}, {}
    for seed in SEEDS:
        data = make_bench_data(seed, "german", SHARED)
        honest[seed], degraded[seed] = judge(data)
    return honest, degraded


def _assert_split(honest: dict[int, Result], degraded: dict[int, Result]) -> None:
    assert all(r.verdict == "pass" for r in honest.values()), {s: r.message for s, r in honest.items()}
    assert all(r.verdict == "fail" for r in degraded.values()), {s: r.message for s, r in degraded.items()}
    for r in [*honest.values(), *degraded.values()]:
        assert r.evidence["comparison"]["se"] > 0 and "paired DeLong" in r.evidence["rule"]


def test_noniid_honest_passes_and_degraded_fails_by_the_paired_rule() -> None:
    def judge(data: BenchData) -> tuple[Result, Result]:
        rows = _eighty(data.noniid_parts)
        return (functional.noniid(_horizontal(data, rows)), functional.noniid(_horizontal(data, rows, crippled=True)))

    honest, degraded = _all_seeds(judge)
    _assert_split(honest, degraded)
    cap = value("auc_max_deficit_wide")
    for r in honest.values():  # the floor is below the bare one (pooled - 0.05) and never below pooled - the cap
        assert r.figures["pooled_auc"] - cap - 1e-12 <= r.figures["floor"] < r.figures["pooled_auc"] - 0.05
        assert r.evidence["split_by"]


def test_dropout_judge_honest_passes_and_degraded_fails_by_the_paired_rule() -> None:
    """F-DROPOUT-RESUME's AUC judge (the dropout itself needs a party kit: tests/attacks/..._dropout_reported)."""

    def judge(data: BenchData) -> tuple[Result, Result]:
        out = []
        for crippled in (False, True):  # trained without the party that left (bank_c)
            ctx = _horizontal(data, _eighty(data.parts[:2]), crippled=crippled)
            spec = horizontal_spec(ctx, ["bank_a", "bank_b"], rounds=6)
            run = run_job(ctx, spec, [], prefix="dropout")
            out.append(judge_auc_noninferior(ctx, run, "auc_margin_dropout", cap_key="auc_max_deficit_wide"))
        return out[0], out[1]

    _assert_split(*_all_seeds(judge))


def test_vertical_honest_passes_and_degraded_fails_against_the_vertical_pooled_model() -> None:
    def judge(data: BenchData) -> tuple[Result, Result]:
        v = data.vertical
        columns = v.label_columns + v.feature_columns
        names = list(vertical_qualify(_ctx(data, ExportsThisModel(None), [])))  # "bank:col", then "bureau:col"
        common = np.intersect1d(v.label_rows, v.feature_rows)
        out = []
        for crippled in (False, True):
            model = _model(data, common[: int(0.8 * common.size)], columns, names)
            api = ExportsThisModel(_crippled(model) if crippled else model)
            out.append(functional.auc_vertical(_ctx(data, api, ["vertical", "model_export"])))
        return out[0], out[1]

    honest, degraded = _all_seeds(judge)
    _assert_split(honest, degraded)
    for seed, r in honest.items():  # judged against the vertical pooled model, not the horizontal one
        assert r.figures["pooled_auc"] == pytest.approx(make_bench_data(seed, "german", SHARED).vertical_baseline.auc)


def test_time_to_auc_reached_is_the_paired_judgement_and_timed_by_the_platforms_rounds() -> None:
    def judge(data: BenchData) -> tuple[Result, Result]:
        return (performance.time_to_auc(_horizontal(data, _eighty(data.parts))),
                performance.time_to_auc(_horizontal(data, _eighty(data.parts), crippled=True)))

    honest, degraded = _all_seeds(judge)
    _assert_split(honest, degraded)
    for r in degraded.values():  # R16-VERDICT-3: the verifier's judgement of the final model decides "reached"
        assert "was not reached" in r.message and "floor" in r.message
    for r in honest.values():  # no platform round AUC reaches the target here: timed to the job's end, said
        assert "the whole job" in r.message and r.figures["seconds_to_target"] == r.figures["job_seconds"]
        assert r.figures["floor"] <= r.figures["target_auc"]


def test_time_to_auc_times_the_first_platform_round_that_reaches_the_target() -> None:
    data = make_bench_data(1, "german", SHARED)
    high = data.baseline.auc  # the platform reports the target reached in round 15 (the only round it shows)
    api = ExportsThisModel(_model(data, _eighty(data.parts), data.columns),
                           rounds=[{"round": 15, "auc": high, "seconds": 0.1, "parties": []}])
    r = performance.time_to_auc(_ctx(data, api, ["horizontal", "model_export"]))
    assert r.verdict == "pass", r.message
    assert "first round whose platform-reported AUC reaches it" in r.message, r.message
    assert r.figures["seconds_to_target"] <= r.figures["job_seconds"]


@pytest.mark.parametrize("test_id", ["F-NONIID", "P-TIME-TO-AUC"])
def test_no_scores_fall_back_to_the_bare_margin_and_say_so(test_id: str) -> None:
    data = make_bench_data(2, "german", SHARED)
    fn = functional.noniid if test_id == "F-NONIID" else performance.time_to_auc
    margin = value("auc_margin_noniid" if test_id == "F-NONIID" else "auc_margin_horizontal")
    for found, verdict in ((data.baseline.auc - margin + 0.001, "pass"), (data.baseline.auc - margin - 0.001, "fail")):
        r = fn(_ctx(data, ExportsThisModel(None, evaluate_auc=found), ["horizontal", "evaluate"]))
        assert r.verdict == verdict, r.message
        assert "bare margin" in r.message, r.message


def test_backdoor_verdict_bound_separates_noise_from_a_backdoor() -> None:
    """S-BACKDOOR judges the exact (Clopper-Pearson) one-sided 95% lower bound: 15 of 73 rows (20.5%, the honest
    seed-2026 draw before the bound) passes; plain FedAvg (73 of 73) and a backdoor at 40% on 70 rows fail; 0 of 70
    passes with an upper end under 5%. The ceiling (highest passing rate) falls with the row count."""
    from sampan.verify.catalogue.backdoor_reference import passing_ceiling, success_bounds
    from sampan.verify.thresholds import value

    limit = value("backdoor_success_max")
    assert success_bounds(15, 73)[0] <= limit < success_bounds(15, 73)[1]
    assert success_bounds(73, 73)[0] > limit
    assert success_bounds(28, 70)[0] > limit
    low, high = success_bounds(0, 70)
    assert low == 0.0 and 0.0 < high < 0.05
    # one-sided 95% each: the two-sided 90% interval (the lower end of 7/10 is beta.ppf(0.05, 7, 4) = 0.3933)
    assert abs(success_bounds(7, 10)[0] - 0.3933) < 1e-3
    ceilings = [passing_ceiling(n) for n in (13, 50, 100, 150, 250)]
    assert ceilings == sorted(ceilings, reverse=True) and 0.24 < ceilings[-1] < ceilings[0] < 0.4, ceilings
