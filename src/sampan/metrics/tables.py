"""Credit tables from pooled score histograms: the score-band (decile) table a credit validator reads.

Bands are formed from the riskiest scores down: each non-empty histogram bin joins band
floor(bands · rows above it / n), so a band holds about n/bands rows (exactly at bin resolution; a bin is
never split, so a bin holding more than a band's share makes fewer, larger bands). Per band: score range,
count, bads, bad rate, cumulative bads and cumulative bad capture (share of all bads in this band and the
riskier ones), lift (band bad rate / overall bad rate) and KS (cumulative bad share − cumulative good
share). Read off the counts the evaluation already releases: no new release.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sampan.metrics.histogram import ScoreHistogram

__all__ = ["ScoreBand", "score_band_table"]


@dataclass(frozen=True)
class ScoreBand:
    """One row of the score-band table (band 1 = the riskiest scores)."""

    band: int
    score_low: float
    score_high: float
    count: int
    bads: int
    bad_rate: float
    cumulative_bads: int
    cumulative_bad_capture: float | None
    lift: float | None
    ks: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_band_table(histogram: ScoreHistogram, bands: int = 10) -> list[ScoreBand]:
    """The score-band table, riskiest band first (see the module docstring)."""
    if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or bands < 1:
        raise ValueError(f"bands must be a positive integer, got {bands!r}")
    n = histogram.n
    if n == 0:
        raise ValueError("a score-band table needs at least one scored row")
    counts = (histogram.pos + histogram.neg)[::-1]  # riskiest bin first
    above = np.concatenate([[0], np.cumsum(counts)[:-1]])
    band_of = np.minimum(bands - 1, (bands * above) // n)
    lows, highs = histogram.edges[:-1][::-1], histogram.edges[1:][::-1]
    pos, neg = histogram.pos[::-1], histogram.neg[::-1]
    total_bads, total_goods = int(histogram.pos.sum()), int(histogram.neg.sum())
    overall = total_bads / n
    rows: list[ScoreBand] = []
    cum_bads = cum_goods = 0
    for band in np.unique(band_of[counts > 0]):
        members = (band_of == band) & (counts > 0)
        count, bads = int(counts[members].sum()), int(pos[members].sum())
        cum_bads += bads
        cum_goods += int(neg[members].sum())
        rate = bads / count
        rows.append(ScoreBand(
            band=len(rows) + 1, score_low=float(lows[members].min()), score_high=float(highs[members].max()),
            count=count, bads=bads, bad_rate=rate, cumulative_bads=cum_bads,
            cumulative_bad_capture=cum_bads / total_bads if total_bads else None,
            lift=rate / overall if overall > 0 else None,
            ks=(cum_bads / total_bads - cum_goods / total_goods) if total_bads and total_goods else None))
    return rows
