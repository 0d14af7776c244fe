"""Pins the fix of review R12-SAC-5 (issue 12; was tests/attacks/review/test_secagg_carried_evaluation_clamped.py) (low,
correctness of released metrics): the evaluation a
fit carries is encoded with the FIT's `max_abs`, so an honest run with a valid `[secure_aggregation]` setting
(frac_bits = 16, max_abs = 1.0: updates clamped at 1) silently clamps every party's holdout counts, loss and Brier
sums at max_abs * 2^(frac_bits - 12) = 16, and the run reports metrics of a truncated histogram.

`_split_sum` rescales the evaluation part by `evaluation_scale(frac_bits)` (12 fraction bits kept) but nothing
widens its clamp; a separate evaluation instance uses `EVAL_MAX_ABS` = 2^36. Here five holdouts of 30 rows each
are reported as n = 80 (5 x 16) and log loss exactly 1.0 ("secagg_evaluation" audit events). No privacy loss; the
released metrics differ from what the parties' data gives and from the separate instance's.

Fix (in place): the evaluation part is clamped at its own bound (`EVAL_MAX_ABS` after scaling, as a separate
evaluation), via per-segment encoding in `SecAggClient.masked_input`. Was: check at run start that max_abs *
2^(frac_bits - 12) bounds the evaluation part (the party's holdout
count is unknown to the coordinator: require it >= EVAL_MAX_ABS, or carry the evaluation at its own scale in a
second segment with its own clamp), or refuse the config combination.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from test_secagg_workflow import _config, _events, _federation, _run, _splits  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402


def test_the_carried_evaluation_counts_every_holdout_row_under_a_valid_secagg_setting(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    config = _config(rounds=3, secagg={"threshold": 0.6, "frac_bits": 16, "max_abs": 1.0})
    run_id, _ = _run(store, config, _federation(5)[0])
    holdout = sum(len(split.test) for split in _splits(5).values())
    evaluations = _events(store, run_id, "secagg_evaluation")
    carried = [e for e in evaluations if "carried_by_round" in e]
    assert [e["round"] for e in carried] == [1, 2]
    assert all(e["metrics"]["n"] == holdout == 150 for e in carried), [e["metrics"]["n"] for e in carried]
