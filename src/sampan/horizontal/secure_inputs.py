"""What SecAgg+ sums in a horizontal round: the vectors the SecAgg client mod masks, and their inverse.

The SecAgg mod (`sampan.privacy.mods.secagg_mod`) is generic; this module tells it, for the horizontal
protocol, which vector a `fit` or `evaluate` reply becomes (and which content its lock binds). It is part
of the privacy composition, not of the handlers: it is the one place horizontal code reads which
protections a request carries (DP3: unweighted, clipped update; DP: public weight, no loss).

What each role learns: the coordinator learns only the sum of these vectors over the round's contributors
(`sampan.privacy.secagg`); the layout itself is public.
"""

from __future__ import annotations

import numpy as np

from sampan.metrics import ScoreHistogram
from sampan.privacy.mods import hidden_indicator
from sampan.wire import Message

__all__ = ["evaluation_from_vector", "evaluation_vector", "secagg_vector"]


def secagg_vector(kind: str, msg: Message, reply: Message, private: bool, public: int | None,
                  ) -> tuple[np.ndarray, bytes | None, int | None]:
    """What SecAgg+ sums from a reply, the content its lock binds and the noise shares it carries.

    `fit`: [update (clipped and noise-shared under DP3, else weighted by n/N), DP3 indicator, weighted loss,
    weight n/N]; under `[privacy]` the loss slot is 0 and the weight is public (released row count over the
    coordinator's total, or 0: the DP3 mean is unweighted). `evaluate`: `evaluation_vector` of the reply."""
    if kind == "evaluate":
        histogram = ScoreHistogram.from_arrays(dict(reply.arrays))
        return evaluation_vector(histogram, float(reply.meta["loss_sum"]), float(reply.meta["brier_sum"]),
                                 int(reply.meta["n"])), None, None
    sa = msg.meta["secagg"]
    update, loss, rows = reply.arrays["update"], float(reply.meta["loss"]), int(reply.meta["n"])
    if private:
        weight, loss = (float(public) / float(sa["total_rows"]) if public is not None else 0.0), 0.0
    else:
        weight = float(rows) / float(sa["total_rows"])
    if "dp3" in msg.meta:  # DP3 mean is unweighted; the indicator feeds adaptive clipping
        indicator = 0.0 if hidden_indicator(msg, private) else float(reply.meta.get("dp3_indicator", 0.0))
        head = update
    else:  # FedAvg: sum of n_i/N-weighted updates and of the weights
        head, indicator = update * weight, 0.0
    vector = np.concatenate([head, [indicator, weight * float(loss), weight]])
    dp3 = msg.meta.get("dp3") or {}
    # the noise shares its update carries (distributed DP3): unmasking then needs that many signed contributors
    shares = int(dp3.get("noise_parties") or dp3["parties"]) if dp3.get("mode") == "distributed" else None
    # the lock content: what the vector holds before the public n/N weighting (a coordinator that changes
    # total_rows rescales every input exactly; it must not get a second unmasking of the same updates)
    content = np.concatenate([update, [indicator, float(loss), float(rows)]]).astype(np.float64).tobytes()
    return vector, content, shares


def evaluation_vector(histogram: ScoreHistogram, loss_sum: float, brier_sum: float, n: int) -> np.ndarray:
    """[pos counts, neg counts, score sums per bin, loss sum, Brier sum, n]: what SecAgg sums for evaluation."""
    return np.concatenate([histogram.pos, histogram.neg, histogram.sum_p, [loss_sum, brier_sum, float(n)]])


def evaluation_from_vector(total: np.ndarray, n_bins: int) -> tuple[ScoreHistogram, float, float, int]:
    """Inverse of `evaluation_vector` on a (decoded) sum: counts are rounded back to integers."""
    empty = ScoreHistogram.empty(n_bins)
    pos = np.rint(total[:n_bins]).astype(np.int64)
    neg = np.rint(total[n_bins:2 * n_bins]).astype(np.int64)
    histogram = ScoreHistogram(empty.edges, np.maximum(pos, 0), np.maximum(neg, 0), total[2 * n_bins:3 * n_bins])
    return histogram, float(total[-3]), float(total[-2]), int(round(total[-1]))
