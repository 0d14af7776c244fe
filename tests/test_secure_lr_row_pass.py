"""Secure vertical LR's batch rules on a kept count (`RowPass`, issue 15): the same refusals as counting the mask,
and a batch's check no longer reads the whole pass (it made an epoch O(n^2 / batch))."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.vertical.secure_lr import BatchRuleError
from sampan.vertical.secure_lr_base import RowPass, _take_partition


def test_a_pass_completes_once_every_row_is_used_and_starts_again() -> None:
    used = RowPass(300)
    order = np.random.default_rng(1).permutation(300)
    assert not used.any() and not used.all()
    assert _take_partition("bank", "training", used, order[:100], 64) is False
    assert used.any() and used.count == 100 and int(used.used.sum()) == 100
    assert _take_partition("bank", "training", used, order[100:], 64) is True
    assert not used.any() and used.count == 0 and not used.used.any()  # a training pass clears itself
    val = RowPass(128)
    assert _take_partition("bank", "validation", val, np.arange(128), 64) is True
    assert val.all() and val.count == 128  # validation: the holder opens the score, then clears it
    val.clear()
    assert not val.any() and not val.used.any()


@pytest.mark.parametrize("rows, why", [
    (np.arange(63), "batch of 63 rows"),
    (np.arange(-1, 99), "unknown rows"),
    (np.arange(250, 350), "unknown rows"),
    (np.concatenate([np.arange(99), [0]]), "repeated rows"),
    (np.arange(250), "leaves 50 rows"),
])
def test_the_refusals_are_unchanged(rows: np.ndarray, why: str) -> None:
    used = RowPass(300)
    with pytest.raises(BatchRuleError, match=why):
        _take_partition("bank", "training", used, rows, 64)
    assert used.count == int(used.used.sum())  # the count never drifts from the mask, refused batch or not


def test_a_batch_reusing_rows_of_the_pass_is_refused() -> None:
    used = RowPass(300)
    _take_partition("bank", "training", used, np.arange(100), 64)
    with pytest.raises(BatchRuleError, match="re-uses rows"):
        _take_partition("bank", "training", used, np.arange(50, 150), 64)
    assert used.count == 100 == int(used.used.sum())
