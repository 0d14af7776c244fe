"""The issue-18 forgery benchmark (bench/fraud_detection.py) on a tiny stand-in corpus: its whole code path runs
(federated through the runner, central, each bank alone, federated DP, leave-one-generator-out, tables, JSON,
snippet), and its metrics are the documented ones (exact interval, ECE, threshold on validation reals)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import _fraud_metrics  # noqa: E402
import fraud_detection  # noqa: E402
from _fraud_data import SplitSizes  # noqa: E402
from _fraud_report import tables, write_json, write_snippet  # noqa: E402

from sampan.fraud.corpus import BankProfile  # noqa: E402
from sampan.fraud.documents import DocImage  # noqa: E402


def _stub_corpus(profile: BankProfile, n_real: int, n_fake: int, seed: int) -> list[DocImage]:
    """Cheap documents with the corpus's shape: textured 'real' images; fakes smoothed (autoencoder), 2x nearest
    up-sampled (upsampler) or with a smoothed square (inpaint, its mask set). Not the F1 generators (their
    training alone would exceed this test's budget); the bench is fed the same way as with `bank_corpus`."""
    rng = np.random.default_rng([seed, len(profile.name)])
    h, w = profile.size
    sources = ("autoencoder", "upsampler", "inpaint")
    docs = []
    for i in range(n_real + n_fake):
        base = rng.normal(128, 40, (h, w, 3))
        mask = np.zeros((h, w), bool)
        source = "real" if i < n_real else sources[i % 3]
        if source == "autoencoder":
            base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, 1, (0, 1))) / 4
            mask[:] = True
        elif source == "upsampler":
            base = np.repeat(np.repeat(base[::2, ::2], 2, 0), 2, 1)
            mask[:] = True
        elif source == "inpaint":
            region = base[:48, :48]
            base[:48, :48] = (region + np.roll(region, 1, 0) + np.roll(region, 1, 1) + np.roll(region, 1, (0, 1))) / 4
            mask[:48, :48] = True
        image = np.clip(base, 0, 255).astype(np.uint8)
        docs.append(DocImage(image, int(source != "real"), source, "id_card", mask, "stub", f"{profile.name}-{i:05d}"))
    return docs


@pytest.mark.slow
def test_the_benchmark_runs_every_contender_and_writes_its_tables(tmp_path: Path) -> None:
    cfg = fraud_detection.BenchConfig(n_banks=2, size=96, sizes=SplitSizes(train=(6, 6), validation=(10, 0),
                                                                            test=(6, 6)),
                                      kinds=("logistic",), rounds=2, dp_epsilons=(4.0,), fprs=(0.1,), seed=3)
    results = fraud_detection.run_bench(cfg, tmp_path / "work", say=lambda text: None, make=_stub_corpus,
                                        dp_bounds=lambda: {"*": (-100.0, 100.0)})
    names = [c["name"] for c in results["contenders"]]
    assert names == ["federated", "central", "federated, region labels", "central, region labels", "alone:bank_a",
                     "alone:bank_b", "federated DP eps=4"]
    fed = results["contenders"][0]
    assert fed["info"]["run_id"] and fed["pooled"]["n_real"] == 12 and fed["pooled"]["n_fake"] == 12
    assert set(fed["banks"]) == set(fed["banks_own_threshold"]) == {"bank_a", "bank_b"}  # 10 reals each: FPR 10%
    assert [r["aggregation"] for r in results["aggregation"]] == ["mean_logit", "top_logit", "soft_or"]
    row = fed["pooled"]["fpr0.1"]
    lo, hi = row["fnr_ci"]
    assert 0.0 <= lo <= row["fnr"] <= hi <= 1.0 and 0.0 <= fed["pooled"]["auc"] <= 1.0
    assert fed["localisation"]["n_images"] > 0  # inpainted stand-ins carry their mask
    dp = results["contenders"][-1]["dp"]
    assert dp["k"] == cfg.max_patches_per_doc and "one image patch" in dp["unit"]
    assert dp["epsilon_spent"] and all(0 < e <= 4.0 for e in dp["epsilon_spent"].values())
    assert {r["held_out"] for r in results["logo"]} == {"autoencoder", "upsampler", "inpaint"}
    for r in results["logo"]:  # real test images + the held-out source only
        assert r["pooled"]["n_real"] == 12 and r["pooled"]["n_fake"] == results["data"]["sizes"]["bank_a"]["test"][
            r["held_out"]] + results["data"]["sizes"]["bank_b"]["test"][r["held_out"]]
    results["command"] = "bench smoke"
    text = tables(results)
    assert "| logistic | federated |" in text and "Leave one generator out" in text and "top_logit" in text
    write_json(tmp_path / "out.json", results)
    assert json.loads((tmp_path / "out.json").read_text())["config"]["logo_kind"] == "logistic"
    write_snippet(tmp_path / "snippet.md", results, text)
    snippet = (tmp_path / "snippet.md").read_text()
    assert "FantasyID" in snippet and "NOT comparable" in snippet and "Data provenance" in snippet


def test_the_metrics_are_the_documented_ones() -> None:
    assert _fraud_metrics.clopper_pearson(0, 10) == (0.0, pytest.approx(0.3085, abs=1e-4))
    lo, hi = _fraud_metrics.clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1871, abs=1e-4) and hi == pytest.approx(0.8129, abs=1e-4)
    labels = np.array([0, 0, 1, 1] * 25)
    assert _fraud_metrics.ece(labels, np.where(labels == 1, 1.0, 0.0)) == 0.0
    assert _fraud_metrics.ece(labels, np.full(100, 0.5)) == 0.0  # one bin, half fake: calibrated, not sharp
    assert _fraud_metrics.ece(labels, np.full(100, 0.9)) == pytest.approx(0.4)
    auc, lo, hi = _fraud_metrics.auc_interval(labels, labels + np.linspace(0, 0.5, 100), seed=1)
    assert auc == 1.0 and lo == hi == 1.0
