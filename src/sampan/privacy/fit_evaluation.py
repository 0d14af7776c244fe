"""The evaluation a secure `fit` carries (issue 12): one SecAgg instance per round instead of two.

Without DP, a round's `fit` request may carry ``evaluate`` ({"bins": ...}); the party evaluates the model it
was sent (the one the round starts from) on its holdout and masks [fit vector | evaluation vector] as ONE
input (`sampan.privacy.mods.secagg_mod`). `evaluation_request` is the `evaluate` request that evaluation
is: the same model, scaler, model config and SecAgg attempt, so it is admitted, digested and locked exactly
as a separate `evaluate` of that model would be. `evaluation_scale` keeps `EVALUATION_FRAC_BITS` fraction
bits for the evaluation part whatever the fit's fixed-point precision (counts need a wide integer part), and
`evaluation_max_abs` gives that part its own clamp (`EVAL_MAX_ABS` after scaling, as a separate evaluation has:
review R12-SAC-5), never the fit's `max_abs`.

`evaluation_lock` is the content every evaluation is locked by, carried or separate (review R12-SAC-1/2): the
exact integer counts (per bin and label) and n, whatever the model digest, frac_bits, scaling or scaler. An
evaluation whose integer output equals an earlier one is unmasked only for that earlier survivor set.
`empty_evaluation` answers the evaluation part of a fit when the party's `max_evaluations` cap is spent (review
R12-SAC-4): zeros and n = 0, so it still trains; the coordinator learns only the summed n (which, next to the
holdout counts parties announce in `describe`, may tell it that some party did not evaluate).

What each role learns: nothing beyond the SecAgg sum (`sampan.privacy.secagg`): the coordinator learns the
summed update and the summed evaluation over ONE survivor set; the layout and the scale are public.
"""

from __future__ import annotations

import numpy as np

from sampan.metrics import ScoreHistogram
from sampan.metrics.histogram import DEFAULT_BINS
from sampan.wire import Message

__all__ = ["EVALUATION_FRAC_BITS", "EVAL_MAX_ABS", "empty_evaluation", "evaluation_lock", "evaluation_max_abs",
           "evaluation_request", "evaluation_scale"]

EVALUATION_FRAC_BITS = 12
EVAL_MAX_ABS = 2.0**36  # the clamp of every evaluation value (counts, sums), carried or separate


def evaluation_request(msg: Message) -> Message:
    """The `evaluate` request a `fit` with ``evaluate`` carries (digests like a separate one on that model)."""
    arrays = {k: v for k, v in msg.arrays.items() if k in ("params", "mean", "scale", "impute")}  # impute: issue 13
    meta = {"model": msg.meta.get("model"), "bins": (msg.meta.get("evaluate") or {}).get("bins", DEFAULT_BINS),
            "secagg": msg.meta.get("secagg")}
    return Message(msg.run_id, msg.step, msg.sender, msg.recipient, "evaluate", arrays=arrays, meta=meta)


def evaluation_scale(frac_bits: int) -> float:
    """The factor on the evaluation part of a [fit | evaluation] vector (`EVALUATION_FRAC_BITS` kept)."""
    return 2.0 ** (EVALUATION_FRAC_BITS - int(frac_bits))


def evaluation_max_abs(frac_bits: int) -> float:
    """The clamp of the (scaled) evaluation part of a [fit | evaluation] vector: `EVAL_MAX_ABS` before scaling."""
    return EVAL_MAX_ABS * evaluation_scale(frac_bits)


def evaluation_lock(reply: Message) -> bytes:
    """The content lock of an evaluation: its exact integer counts (pos, neg per bin) and n, nothing that a
    scaling, frac_bits or a no-op scaler could change (the same bytes for a carried and a separate one)."""
    histogram = ScoreHistogram.from_arrays(dict(reply.arrays))
    counts = np.concatenate([np.rint(histogram.pos), np.rint(histogram.neg), [float(reply.meta["n"])]])
    return b"evaluation-counts|" + np.ascontiguousarray(counts.astype(np.int64)).tobytes()


def empty_evaluation(request: Message, bins: int) -> Message:
    """The evaluation part a capped party sends with its fit: zero counts and sums, n = 0 (it evaluated nothing)."""
    return request.reply("evaluation", arrays=ScoreHistogram.empty(bins).to_arrays(),
                         meta={"n": 0, "loss_sum": 0.0, "brier_sum": 0.0, "metrics": {}})
