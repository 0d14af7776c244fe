"""The scale harness's PSS budget (bench/_scale.py `PeakSampler`): cheap polls stay frequent, PSS sweeps keep to
their share of one core and still chase a new memory high.

Why: a PSS read walks every page table of a process, and reading it every 0.5 s inflated a 10M-row run's wall
clock. The rule is driven here on a made-up clock (no real time, no timing assertion): each simulated sweep
costs what the test says, and the test counts what the rule spent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _scale  # noqa: E402


def _drive(sampler: _scale.PeakSampler, rss_at: list[int], cost: float, start: int = 0,
           poll: float = 0.1) -> list[int]:
    """Polls number `start`, `start` + 1, ... every `poll` seconds with the summed RSS of `rss_at`; each sweep
    costs `cost` CPU seconds. The numbers of the polls that swept."""
    sweeps = []
    for i, rss in enumerate(rss_at, start + 1):
        now = i * poll
        if sampler._pss_due(now, rss):
            sampler._spent(cost, now, rss)
            sweeps.append(i)
        sampler._last_poll = now
    return sweeps


def test_sweeps_keep_to_one_percent_of_a_core() -> None:
    sampler = _scale.PeakSampler(pss_budget=0.01)
    cost = 0.05  # a 10 GB process: tens of ms per page-table walk
    sweeps = _drive(sampler, [10 * 2**30] * 6000, cost)  # ten minutes at steady memory
    assert sampler._pss_seconds <= 0.01 * 600 + 5 * cost  # the budget, plus the saved sweeps and the first one
    assert len(sweeps) >= 50  # a regular sweep every 2 * cost / budget = 10 s, not none
    # the old rule (a sweep every 0.5 s) would have spent 1200 sweeps x 50 ms = 60 s, 10% of the core
    growing = _scale.PeakSampler(pss_budget=0.01)  # memory rising all along: every poll is a new high
    _drive(growing, [2**30 + i * 2**26 for i in range(6000)], cost)
    assert growing._pss_seconds <= 0.01 * 600 + 5 * cost
    assert growing._pss_samples > sampler._pss_samples  # the rest of the budget went to chasing the high


def test_a_new_memory_high_is_swept_at_once_when_the_budget_allows() -> None:
    sampler = _scale.PeakSampler(pss_budget=0.01)
    steady = _drive(sampler, [2**30] * 300, cost=0.01)  # 30 s steady: a regular sweep every 2 s (20 polls)
    assert len(steady) >= 10 and steady[-1] > 280
    polls = 300
    while not _drive(sampler, [2**30], cost=0.01, start=polls):  # up to the next regular sweep
        polls += 1
    polls += 1
    assert _drive(sampler, [2**30] * 5, cost=0.01, start=polls) == []  # half a second on: nothing due
    polls += 5
    # half as much memory again, long before the next regular sweep: swept at the first poll that sees it
    assert _drive(sampler, [int(1.5 * 2**30)], cost=0.01, start=polls) == [polls + 1]


def test_no_budget_no_sweep_and_a_child_is_still_seen() -> None:
    code = "import numpy, time; a = numpy.ones(20_000_000); time.sleep(0.3)"  # 160 MB, touched
    with _scale.PeakSampler(interval=0.02, pss_budget=0.0) as mem:
        subprocess.run([sys.executable, "-c", code], check=True)
    peaks = mem.result()
    assert peaks.simultaneous_pss is None and peaks.pss_samples == 0
    assert max(v for k, v in peaks.per_process.items() if not k.startswith(f"{mem.root} ")) > 150e6
    assert set(peaks.as_dict()) >= {"per_process_mib", "sum_of_peaks_mib", "simultaneous_rss_mib",
                                    "simultaneous_pss_mib", "samples", "seconds", "pss_samples", "pss_cpu_seconds"}
