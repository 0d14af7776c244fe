"""The party's privacy around its "each bank alone" answer (`sampan.horizontal.local_comparison`), as a `Mod`.

Every `bank_alone` is an exact release about the bank's holdout rows (label counts per score bin), so, with or
without DP, the party answers it once per run (a repeat gets the same reply) and only in a run where it answered
an evaluation: that run counts against its ``max_evaluations`` (review R13-BA-1), a bank whose cap is spent gives
nothing more through this door. Both histograms have at most `DP_BINS` bins and sums at bin midpoints (a function
of the label counts only: no holdout score leaves, `sampan.horizontal.local_comparison`). The model config must
match the consortium parameters sent (nothing is allocated beyond what travelled, review R13-BA-5).

Under DP (the request carries ``dp2``, or the party answered a DP request of the run, now or before a restart:
`PartyDPState.dp_runs` is kept in its state dir, review R13-BA-4, or its policy requires DP) the local-only model
is trained by DP-SGD instead of the handler's optimiser, and before anything is computed the party:

- refuses without ``dp2`` and its own released row count (its sampling rate and steps must not depend on n);
- refuses any bins but `DP_BINS`, a consortium model other than the one it evaluated in this run (no second
  model's evaluation through this door), and a scaler (mean, scale, fill values) other than the exact arrays of
  that evaluation: the evaluated digest folds the scaler into the weights, and a scaler that folds to the same
  function could still steer the local-only model into a coordinator-chosen query (review R13-BA-2);
- charges its own ledger write-ahead (`PartyPrivacyPolicy.admit_fit`: minimum noise, budget), as for a DP2 fit.

What each role learns: the coordinator learns exactly that reply, once per run; the local-only model is a
DP-SGD output (charged DP2), the consortium model is the run's released model, holdout rows are outside the DP
unit. Nothing here is sent to another party.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
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


def _scaler_digest(msg: Message) -> str:
    """The exact bytes of a request's scaler and fill values (not folded: two scalers of one function differ)."""
    digest = hashlib.sha256()
    for name in sorted(k for k in msg.arrays if k in ("mean", "scale") or k.startswith("impute")):
        array = np.ascontiguousarray(msg.arrays[name])
        digest.update(f"|{name}|{array.dtype.str}|{array.shape}|".encode() + array.tobytes())
    return digest.hexdigest()


def _admit_counted(state: PartyDPState, msg: Message) -> None:
    """Only in a run whose evaluation it answered (so the run counts against ``max_evaluations``)."""
    if msg.run_id not in state.evaluated and state.evaluated_path is not None:
        state.evaluated = {**state.load_evaluated(), **state.evaluated}  # another instance may have answered
    if msg.run_id not in state.evaluated:
        raise _refuse(state, "it compares only in a run whose evaluation it answered (each such run counts against "
                      "its max_evaluations: the comparison is another exact release about its holdout rows)")


def _admit_private(state: PartyDPState, msg: Message, scalers: dict[str, str]) -> DPSGDConfig:
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
    if scalers.get(msg.run_id) != _scaler_digest(msg):
        raise _refuse(state, "under DP the local-only model trains on the exact scaler of the run's evaluated model "
                      "(as this process answered it), and this request sends another (or the evaluation was "
                      "answered before a restart)")
    state.policy.admit_fit(state.name, {"dp2": msg.meta["dp2"], "public_rows": public, "train": msg.meta["train"]},
                           state.train_rows, step=msg.step, attempt="bank_alone")
    settings = {k: v for k, v in dict(msg.meta["dp2"]).items() if k in ("noise_multiplier", "max_grad_norm",
                                                                          "sampling_rate")}
    return DPSGDConfig(**settings, public_rows=public)


def local_comparison_mod(state: PartyDPState, compare_with: CompareWith, kind: str = "bank_alone") -> Mod:
    """Once per run, after the run's counted evaluation; under DP the local-only model by DP-SGD on the evaluated
    scaler, charged to the party's ledger (see the module docstring)."""
    answered: dict[str, Message] = {}
    scalers: dict[str, str] = {}  # run -> exact scaler of the first evaluation it answered in the run

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind == "evaluate":  # admitted by the policy already: remember the scaler it evaluated with
            reply = inner(msg)
            if not reply.is_error:
                with state.lock:
                    scalers.setdefault(msg.run_id, _scaler_digest(msg))
            return reply
        if msg.kind != kind:
            return inner(msg)
        with state.lock:
            if msg.run_id in answered:
                return answered[msg.run_id]
            _admit_counted(state, msg)
            if "dp2" in msg.meta or state.private(msg):
                dp = _admit_private(state, msg, scalers)
                state.dp_runs.add(msg.run_id)

                def trainer(model: Any, start: np.ndarray, X: np.ndarray, y: np.ndarray, cfg: Any,
                            seed: int) -> np.ndarray:
                    return np.asarray(dp_sgd_train(model, start, X, y, cfg, dp).result.params)  # noise: CSPRNG
                reply = compare_with(msg, trainer)
            else:
                reply = inner(msg)
            if not reply.is_error:
                answered[msg.run_id] = reply
            return reply

    return mod
