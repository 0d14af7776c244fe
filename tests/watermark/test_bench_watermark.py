"""The issue-19 watermark benchmark (bench/watermark_robustness.py) on a tiny run with Sampan's method only (the
baselines live in the optional .venv-watermark): its whole code path runs (generated images, embed, attacks with
per-(image, attack) seeds, decisions, aggregation with exact intervals, FPR pairs, JSON, snippet), and the baselines'
binomial-tail rule is the documented one."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import watermark_robustness  # noqa: E402
from _wm_fpr import clopper_pearson, combine_fpr, fpr_pool, summarise_p_values  # noqa: E402
from _wm_images import generated_image  # noqa: E402
from _wm_methods import Decoded, binomial_tail, detected, matches_needed  # noqa: E402


def test_binomial_tail_rule_for_keyless_baselines() -> None:
    assert matches_needed(1e-3) == 26 and matches_needed(1e-6) == 30
    assert binomial_tail(26) <= 1e-3 < binomial_tail(25)
    assert binomial_tail(30) <= 1e-6 < binomial_tail(29)
    assert binomial_tail(0) == pytest.approx(1.0)
    payload = np.zeros(32, np.int64)
    bits = payload.copy()
    bits[:3] = 1  # 29 matches: enough at 1e-3, not at 1e-6
    assert detected(Decoded(bits, None, {}), payload, 1e-3)
    assert not detected(Decoded(bits, None, {}), payload, 1e-6)
    assert detected(Decoded(bits, 1e-7, {}), payload, 1e-6)  # a p-value, where there is one, decides


def test_clopper_pearson_and_pool() -> None:
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    img = generated_image(3).pixels
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    pool = fpr_pool([img], side=256)
    assert len(pool) == 8 and all(p.shape == (256, 256, 3) for p in pool)


def test_parallel_fpr_workers_combine() -> None:
    a = summarise_p_values([1.0, 5e-4, 0.2, 1e-7], 3.0)
    b = summarise_p_values([0.9, 2e-3], 5.0)
    both = combine_fpr([a, b])
    assert both["pairs"] == 6 and both["workers"] == 2 and both["min_p"] == 1e-7
    assert both["0.001"]["false_positives"] == 2 and both["1e-06"]["false_positives"] == 1
    assert both["0.001"]["ci95"] == list(clopper_pearson(2, 6)) and both["complete"] is False


@pytest.mark.slow
def test_tiny_run_writes_json_and_snippet(tmp_path: Path) -> None:
    out, snippet = tmp_path / "wm.json", tmp_path / "snippet.md"
    result = watermark_robustness.main([
        "--skimage-images", "0", "--generated-images", "1", "--methods", "sampan",
        "--attacks", "none,jpeg50,rotate15_rescale", "--fpr-pairs", "4", "--fpr-side", "256",
        "--out", str(out), "--snippet", str(snippet)])
    saved = json.loads(out.read_text())
    assert saved["meta"]["attacks"] == ["none", "jpeg50", "rotate15_rescale"]
    cell = saved["summary"]["attacks"]["none"]["sampan"]
    assert cell["n"] == 1 and cell["bit_acc"] == 1.0 and cell["tpr_1e-06"] == 1.0
    assert saved["summary"]["quality"]["sampan"]["psnr_mean"] > 30
    assert saved["fpr"]["sampan"]["pairs"] == 4 and saved["fpr"]["sampan"]["meta"]["image_side"] == 256
    assert "rotate15_rescale" in saved["goal"]
    text = snippet.read_text()
    assert "| attack | sampan |" in text and "generated locally" in text and "binomial" in text
    assert not math.isnan(result["summary"]["quality"]["sampan"]["ssim_mean"])
    # Re-rendering from the saved run (after a separate FPR run) rewrites the same snippet.
    again = watermark_robustness.main(["--render-from", str(out), "--snippet", str(tmp_path / "again.md")])
    assert again["summary"] == saved["summary"]
    assert (tmp_path / "again.md").read_text() == text
