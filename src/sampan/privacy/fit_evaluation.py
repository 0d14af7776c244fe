"""The evaluation a secure `fit` carries (issue 12): one SecAgg instance per round instead of two.

Without DP, a round's `fit` request may carry ``evaluate`` ({"bins": ...}); the party evaluates the model it
was sent (the one the round starts from) on its holdout and masks [fit vector | evaluation vector] as ONE
input (`sampan.privacy.mods.secagg_mod`). `evaluation_request` is the `evaluate` request that evaluation
is: the same model, scaler, model config and SecAgg attempt, so it is admitted, digested and locked exactly
as a separate `evaluate` of that model would be. `evaluation_scale` keeps `EVALUATION_FRAC_BITS` fraction
bits for the evaluation part whatever the fit's fixed-point precision (counts need a wide integer part).

What each role learns: nothing beyond the SecAgg sum (`sampan.privacy.secagg`): the coordinator learns the
summed update and the summed evaluation over ONE survivor set; the layout and the scale are public.
"""

from __future__ import annotations

from sampan.metrics.histogram import DEFAULT_BINS
from sampan.wire import Message

__all__ = ["EVALUATION_FRAC_BITS", "evaluation_request", "evaluation_scale"]

EVALUATION_FRAC_BITS = 12


def evaluation_request(msg: Message) -> Message:
    """The `evaluate` request a `fit` with ``evaluate`` carries (digests like a separate one on that model)."""
    arrays = {k: v for k, v in msg.arrays.items() if k in ("params", "mean", "scale")}
    meta = {"model": msg.meta.get("model"), "bins": (msg.meta.get("evaluate") or {}).get("bins", DEFAULT_BINS),
            "secagg": msg.meta.get("secagg")}
    return Message(msg.run_id, msg.step, msg.sender, msg.recipient, "evaluate", arrays=arrays, meta=meta)


def evaluation_scale(frac_bits: int) -> float:
    """The factor on the evaluation part of a [fit | evaluation] vector (`EVALUATION_FRAC_BITS` kept)."""
    return 2.0 ** (EVALUATION_FRAC_BITS - int(frac_bits))
