"""Threshold rules, the score-band table and group metrics, on hand-built histograms with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.metrics import ScoreHistogram
from sampan.metrics.groups import disparity, group_table
from sampan.metrics.tables import score_band_table
from sampan.metrics.thresholds import choose_threshold, confusion_at


def _hist(pos: list[int], neg: list[int]) -> ScoreHistogram:
    n_bins = len(pos)
    mid = (np.arange(n_bins) + 0.5) / n_bins
    return ScoreHistogram(np.linspace(0, 1, n_bins + 1), np.array(pos), np.array(neg),
                          (np.array(pos) + np.array(neg)) * mid)


# 4 bins (edges 0, .25, .5, .75, 1): 10 bads, 90 goods
HIST = _hist([0, 1, 3, 6], [50, 30, 8, 2])


def test_max_ks_picks_the_ks_edge() -> None:
    choice = choose_threshold(HIST, "max_ks")
    # declining bins >= k: k=2 gives TPR .9, FPR 10/90 -> .789 (k=1: 1 - 40/90 = .556; k=3: .6 - 2/90 = .578)
    assert choice.threshold == 0.5
    assert (choice.confusion.tp, choice.confusion.fp, choice.confusion.tn, choice.confusion.fn) == (9, 10, 80, 1)
    assert choice.confusion.precision == pytest.approx(9 / 19)
    assert choice.confusion.recall == pytest.approx(0.9)
    assert choice.confusion.f1 == pytest.approx(2 * (9 / 19) * 0.9 / (9 / 19 + 0.9))


def test_approval_rate_picks_the_closest_edge() -> None:
    # approval at k = 0..4: 0, .5, .81, .92, 1  -> 0.7 is closest to .81
    choice = choose_threshold(HIST, "approval_rate", approval_rate=0.7)
    assert choice.threshold == 0.5 and choice.confusion.approval_rate == pytest.approx(0.81)
    assert choose_threshold(HIST, "approval_rate", approval_rate=0.5).threshold == 0.25
    # a tie between .5 and .81 at .655 goes to the lower approval rate
    assert choose_threshold(HIST, "approval_rate", approval_rate=0.655).threshold == 0.25


def test_cost_ratio_minimises_weighted_errors() -> None:
    # cost = c*FN + FP at k=0..4: FN 0,0,1,4,10; FP 90,40,10,2,0
    assert choose_threshold(HIST, "cost_ratio", cost_fn_fp=5.0).threshold == 0.5   # 90, 40, 15, 22, 50
    assert choose_threshold(HIST, "cost_ratio", cost_fn_fp=1.0).threshold == 0.75  # 90, 40, 11, 6, 10
    assert choose_threshold(HIST, "cost_ratio", cost_fn_fp=100.0).threshold == 0.25  # 90, 40, 110, ...


def test_bad_rule_and_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold_rule"):
        choose_threshold(HIST, "youden")
    with pytest.raises(ValueError, match="approval_rate"):
        choose_threshold(HIST, "approval_rate", approval_rate=1.5)
    with pytest.raises(ValueError, match="cost_fn_fp"):
        choose_threshold(HIST, "cost_ratio", cost_fn_fp=0.0)


def test_confusion_at_matches_the_choice() -> None:
    assert confusion_at(HIST, 0.5) == choose_threshold(HIST, "max_ks").confusion


def test_score_band_table_sums_and_captures() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=2000)
    y = (rng.uniform(size=2000) < p).astype(int)
    hist = ScoreHistogram.from_scores(y, p, 100)
    table = score_band_table(hist, 10)
    assert len(table) == 10
    assert sum(row.count for row in table) == 2000 and sum(row.bads for row in table) == int(y.sum())
    assert table[-1].cumulative_bad_capture == pytest.approx(1.0)
    assert table[-1].ks == pytest.approx(0.0)
    assert all(abs(row.count - 200) <= 40 for row in table)  # deciles at bin resolution
    assert table[0].lift > 1.5 > table[-1].lift  # riskiest band first
    assert hist.ks() - 0.02 <= max(row.ks for row in table) <= hist.ks() + 1e-12  # KS at band edges only
    assert all(a.score_low >= b.score_high - 1e-12 for a, b in zip(table, table[1:], strict=False))


def test_score_band_table_on_hand_counts() -> None:
    table = score_band_table(HIST, 2)  # riskiest first: bins 3,2 (19 rows) and 1 (31) in band 1; bin 0 in band 2
    assert [(r.count, r.bads) for r in table] == [(50, 10), (50, 0)]
    assert table[0].lift == pytest.approx(2.0) and table[0].ks == pytest.approx(1 - 40 / 90)


def test_group_table_suppresses_small_groups_and_reports_disparity() -> None:
    big = _hist([2, 8], [60, 30])  # 100 rows: approval at .5 = 62%
    other = _hist([1, 4], [40, 5])  # 50 rows: 82%
    tiny = _hist([0, 1], [1, 0])
    rows = group_table({"sector": [("retail", big), ("trade", other), ("rare", tiny)]}, 0.5, min_count=10)
    assert [r.suppressed for r in rows] == [False, False, True]
    assert rows[2].count is None and rows[2].auc is None
    assert rows[0].approval_rate == pytest.approx(0.62) and rows[0].bad_rate == pytest.approx(0.1)
    assert rows[0].auc == pytest.approx(big.auc())
    summary = disparity(rows)["sector"]
    assert summary["ratio"] == pytest.approx(0.82 / 0.62)
    assert (summary["highest"], summary["lowest"]) == ("trade", "retail")
