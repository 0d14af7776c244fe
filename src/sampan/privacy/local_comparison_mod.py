"""The party's privacy around its "each bank alone" answer (`sampan.horizontal.local_comparison`), as a `Mod`.

Without DP the exact handler answers (its figures are listed as revealed in the receipt), once per run: a repeat
gets the same reply. Under DP (the request carries ``dp2``, or the party already answered a DP request of the
run, or its policy requires DP) the local-only model is trained by DP-SGD instead of the handler's optimiser,
and before anything is computed the party:

- refuses without ``dp2`` and its own released row count (its sampling rate and steps must not depend on n);
- refuses any bins but `DP_BINS`, and a consortium model other than the one it evaluated in this run (no second
  model's evaluation through this door);
- charges its own ledger write-ahead (`PartyPrivacyPolicy.admit_fit`: minimum noise, budget), as for a DP2 fit.

The reply then holds both histograms centred at bin midpoints (a function of the label counts only) and the
holdout count. What each role learns: the coordinator learns exactly that reply, once per run; the local-only
model is a DP-SGD output (charged DP2), the consortium model is the run's released model, holdout rows are
outside the DP unit. Nothing here is sent to another party.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.metrics import ScoreHistogram
from sampan.metrics.histogram import DP_BINS
from sampan.privacy.admission import PartyDPState, request_digest
from sampan.privacy.dpsgd import DPSGDConfig, dp_sgd_train
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["local_comparison_mod"]

# compare_with(request, trainer) -> reply; trainer(model, start, X, y, cfg, seed) -> local-only parameters
CompareWith = Callable[[Message, Callable[..., np.ndarray]], Message]


def _refuse(state: PartyDPState, why: str) -> PolicyRefused:
    return PolicyRefused(f"party {state.name!r} refuses 'bank_alone': {why}")


def _admit_private(state: PartyDPState, msg: Message) -> DPSGDConfig:
    """The DP rules of a local-only comparison; the party's ledger is charged last (nothing refused after it)."""
    if "dp2" not in msg.meta:
        raise _refuse(state, "under DP its local-only model must be trained by DP-SGD (no dp2 settings sent)")
    public = state.public_rows(msg)
    if public is None:
        raise _refuse(state, "no released row count: DP-SGD's rate and steps would depend on its exact count")
    if msg.meta.get("bins") != DP_BINS:
        raise _refuse(state, f"under DP the histograms have exactly {DP_BINS} bins")
    evaluation = Message(msg.run_id, msg.step, msg.sender, msg.recipient, "evaluate",
                         arrays={k: v for k, v in msg.arrays.items() if k in ("params", "mean", "scale", "impute")},
                         meta={"model": msg.meta.get("model")})
    if state.evaluated.get(msg.run_id) != request_digest("evaluate", evaluation):
        raise _refuse(state, "under DP the consortium model must be the one it evaluated in this run")
    state.policy.admit_fit(state.name, {"dp2": msg.meta["dp2"], "public_rows": public, "train": msg.meta["train"]},
                           state.train_rows, step=msg.step, attempt="bank_alone")
    settings = {k: v for k, v in dict(msg.meta["dp2"]).items() if k in ("noise_multiplier", "max_grad_norm",
                                                                          "sampling_rate")}
    return DPSGDConfig(**settings, public_rows=public)


def _centred(reply: Message) -> Message:
    """Both histograms with sums at bin midpoints: every field a function of the label counts."""
    arrays: dict[str, Any] = {}
    for name in ("local", "consortium"):
        part: dict[str, Any] = {k.removeprefix(f"{name}."): v for k, v in reply.arrays.items()
                                if k.startswith(f"{name}.")}
        arrays.update({f"{name}.{k}": v for k, v in ScoreHistogram.from_arrays(part).centred().to_arrays().items()})
    return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, arrays,
                   {"n": reply.meta["n"]})


def local_comparison_mod(state: PartyDPState, compare_with: CompareWith, kind: str = "bank_alone") -> Mod:
    """Once per run; under DP the local-only model by DP-SGD, charged to the party's ledger (see the docstring)."""
    answered: dict[str, Message] = {}

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind != kind:
            return inner(msg)
        with state.lock:
            if msg.run_id in answered:
                return answered[msg.run_id]
            if "dp2" in msg.meta or state.private(msg):
                dp = _admit_private(state, msg)
                state.dp_runs.add(msg.run_id)

                def trainer(model: Any, start: np.ndarray, X: np.ndarray, y: np.ndarray, cfg: Any,
                            seed: int) -> np.ndarray:
                    return np.asarray(dp_sgd_train(model, start, X, y, cfg, dp).result.params)  # noise: CSPRNG
                reply = _centred(compare_with(msg, trainer))
            else:
                reply = inner(msg)
            if not reply.is_error:
                answered[msg.run_id] = reply
            return reply

    return mod
