"""F-AUC-HORIZONTAL's rule: a paired DeLong non-inferiority test against the pooled model on the same holdout rows.

The DeLong figures are checked against `sampan.metrics.roc_auc` and a seeded bootstrap; the verdict is checked on the
real German-credit draws through the catalogue's own test function, with a stub platform that exports a model the
test fitted: an honest one (LR on 80% of each party's rows, as Sampan trains) passes every draw, a degraded one
(fitted on 30 rows of one party: it learned materially less) fails, and an export that is the pooled model passes.
Synthetic scores come from fixed seeds (reproducible test data, not key material)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.metrics import roc_auc
from sampan.verify.auc_compare import AucCompareError, delong_paired, noninferior
from sampan.verify.catalogue import functional
from sampan.verify.catalogue.base import Context
from sampan.verify.catalogue.data import BenchData, make_bench_data
from sampan.verify.catalogue.http import Reply
from sampan.verify.datasets import fit_lr
from sampan.verify.thresholds import value

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


def _scores(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    a = y * 1.0 + rng.normal(size=n)
    b = a + 0.5 * rng.normal(size=n)  # correlated with a, as two models of the same data are
    return y, a, b


def test_delong_aucs_match_roc_auc_and_identical_scores_have_no_spread() -> None:
    y, a, b = _scores(1)
    auc_a, auc_b, se = delong_paired(y, a, b)
    assert auc_a == pytest.approx(roc_auc(y, a), abs=1e-12)
    assert auc_b == pytest.approx(roc_auc(y, b), abs=1e-12)
    assert se > 0
    assert delong_paired(y, a, a)[2] == 0.0
    ties = np.round(a)  # heavy ties: ties count 1/2 in both
    assert delong_paired(y, ties, b)[0] == pytest.approx(roc_auc(y, ties), abs=1e-12)


def test_delong_standard_error_agrees_with_a_bootstrap() -> None:
    y, a, b = _scores(2)
    _, _, se = delong_paired(y, a, b)
    rng = np.random.default_rng(3)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    diffs = []
    for _ in range(1500):  # stratified bootstrap over rows, both models on the same resampled rows
        rows = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        diffs.append(roc_auc(y[rows], a[rows]) - roc_auc(y[rows], b[rows]))
    assert se == pytest.approx(float(np.std(diffs, ddof=1)), rel=0.15)


def test_the_paired_error_is_far_below_an_unpaired_one() -> None:
    """Why pairing matters: the difference of two close models has less noise than either AUC alone."""
    y, a, b = _scores(4)
    _, _, se_paired = delong_paired(y, a, b)
    _, _, se_alone = delong_paired(y, a, np.zeros_like(a))  # b constant: the spread of AUC_a alone
    assert se_paired < 0.7 * se_alone


@pytest.mark.parametrize("args, word", [
    ((np.array([0, 1, 0]), np.ones(3), np.ones(2)), "lengths"),
    ((np.array([0, 1, 0, 1]), np.array([0.1, np.nan, 0.2, 0.3]), np.ones(4)), "NaN"),
    ((np.array([0, 0, 0, 1]), np.arange(4.0), np.arange(4.0)), "positives"),
])
def test_bad_scores_are_refused_with_a_clear_error(args: tuple[np.ndarray, ...], word: str) -> None:
    with pytest.raises(AucCompareError, match=word):
        delong_paired(*args)


def test_the_rule_fails_only_beyond_margin_plus_z_standard_errors() -> None:
    y, a, b = _scores(5)
    c = noninferior(y, a, b, margin=0.02, alpha=0.01, power=0.95, max_deficit=1.0)
    assert c.floor == pytest.approx(c.reference_auc - 0.02 - 2.3263 * c.se, abs=1e-4)
    assert c.detectable_gap == pytest.approx(0.02 + (2.3263 + 1.6449) * c.se, abs=1e-4)
    assert c.passed == (c.auc >= c.floor)
    worse = noninferior(y, b, a, margin=0.0, alpha=0.49, power=0.95, max_deficit=1.0)  # b, the noisier, is below a
    assert worse.difference < 0 and not worse.passed
    with pytest.raises(AucCompareError, match="alpha"):
        noninferior(y, a, b, margin=0.02, alpha=0.7, power=0.95, max_deficit=1.0)


def test_the_cap_fails_a_distant_model_whatever_its_standard_error() -> None:
    """A model far from the reference has a large paired error; the cap keeps that from widening the floor."""
    y, a, _ = _scores(6)
    weak = a + 3.0 * np.random.default_rng(7).normal(size=a.size)  # much noisier: far below a, weakly correlated
    loose = noninferior(y, weak, a, margin=0.02, alpha=0.01, power=0.95, max_deficit=1.0)
    capped = noninferior(y, weak, a, margin=0.02, alpha=0.01, power=0.95, max_deficit=0.05)
    assert loose.margin + loose.z * loose.se > 0.05 and -loose.difference > 0.05
    assert capped.floor == pytest.approx(capped.reference_auc - 0.05) and not capped.passed


# --- the verdict on real draws, through the catalogue's F-AUC-HORIZONTAL -----------------------------------


class ExportsThisModel:
    """A stub platform whose jobs succeed at once and export the model the test gives it (`linear.v1`)."""

    url = "http://127.0.0.1:9"

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model

    def call(self, method: str, path: str, body: Any = None, **_: Any) -> Reply:
        if path.endswith("/model"):
            return Reply(200, self.model, {})
        if path.endswith("/results"):
            return Reply(200, {"rounds": [], "metrics": {}}, {})
        return Reply(200, {"project_id": "p1", "job_id": "j1", "state": "succeeded", "round": 15, "rounds": 15}, {})

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        return self.call(method, path, body).body


def _judge(data: BenchData, coef: np.ndarray, intercept: float) -> Any:
    model = {"format": "linear.v1", "features": list(data.columns), "coefficients": coef.tolist(),
             "intercept": intercept}
    info = {"capabilities": ["horizontal", "model_export"], "claims": {}}
    ctx = Context(api=ExportsThisModel(model), info=info, data=data, profile="quick")  # type: ignore[arg-type]
    return functional.auc_horizontal(ctx)


def _verdict(data: BenchData, rows: np.ndarray) -> Any:
    coef, intercept = fit_lr(data.table.cols(data.columns)[rows], data.table.y[rows].astype(np.float64))
    return _judge(data, coef, intercept)


def _honest_rows(data: BenchData) -> np.ndarray:
    return np.concatenate([p[: int(0.8 * p.size)] for p in data.parts])  # 80% of each party, as Sampan trains


@needs_data
def test_honest_runs_pass_and_degraded_runs_fail_on_the_same_draws() -> None:
    honest, degraded = {}, {}
    for seed in range(8):
        data = make_bench_data(seed, "german", SHARED)
        honest[seed] = _verdict(data, _honest_rows(data))
        degraded[seed] = _verdict(data, data.parts[2][:30])  # one party's first 30 rows: it learned far less
    assert all(r.verdict == "pass" for r in honest.values()), {s: r.message for s, r in honest.items()}
    assert all(r.verdict == "fail" for r in degraded.values()), {s: r.message for s, r in degraded.items()}
    for r in honest.values():
        assert r.figures["se_difference"] > 0 and r.figures["floor"] < r.figures["pooled_auc"] - value(
            "auc_margin_horizontal")
        assert r.evidence["comparison"]["passed"] is True


@needs_data
def test_the_pooled_model_itself_passes_and_a_label_blind_model_fails() -> None:
    data = make_bench_data(4, "german", SHARED)
    pooled = _verdict(data, data.train)
    assert pooled.verdict == "pass" and abs(pooled.figures["difference"]) < 0.01, pooled.message
    noise = np.random.default_rng(9).normal(size=len(data.columns))  # coefficients that never saw a label
    blind = _judge(data, noise, 0.0)
    assert blind.verdict == "fail", blind.message
