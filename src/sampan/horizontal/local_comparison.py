"""Each bank alone vs the consortium (issue 13, item 6): computed where the data lives, only histograms travel.

With `[bank_alone]` a horizontal LR/MLP run ends with one more exchange, kind `bank_alone`. Each bank trains a
local-only model (the run's model family and local settings, `[bank_alone] epochs` epochs, from a start drawn
from the request's seed) on its OWN training rows, scores it and the consortium's final model on its OWN
holdout, and replies with two score histograms by label (`local.*`, `consortium.*`) and its holdout count. The
coordinator turns each into an AUC per bank; the report and `sampan run` print them side by side.

What each role learns: the coordinator learns, per bank, the label counts of its holdout in at most `DP_BINS`
score bins (sums at bin midpoints: no holdout score leaves) under the local-only model and under the consortium
model (so each bank's holdout size and composition, as the final evaluation reveals them, and how well a model
trained on that bank alone ranks its holdout); nothing about another bank. Other parties learn nothing. Secure
aggregation cannot apply: the figures are per bank by nature (a sum over banks would answer a different
question), so even a SecAgg run sends them in clear, and the receipt says so. Without DP the local-only
histogram is listed as revealed (`sampan.wire.catalogue`). A bank answers once per run and only in a run whose
evaluation it answered (counted against its ``max_evaluations``). Under `[privacy]` the local-only model is
trained by DP-SGD at the run's DP2 settings and its release is charged as DP2 to the run's ledger (write-ahead,
here) and to the bank's own ledger (its mod, `sampan.privacy.local_comparison_mod`), and the consortium model
and scaler must be those the bank evaluated in the run. Holdout rows stay outside the DP unit, as for the final
evaluation. A bank that refuses or fails is reported as not available (with its reason); the run completes.
The handler here computes exact answers only; the noise lives in the mod.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from sampan.core.party import Handler, PartyApp
from sampan.core.seeds import derive_seed
from sampan.core.transport import exchange_settled
from sampan.errors import PartyError
from sampan.horizontal.party_rows import block_scores
from sampan.horizontal.secure_rounds import COORDINATOR
from sampan.metrics import ScoreHistogram
from sampan.metrics.histogram import DP_BINS
from sampan.models import Model, model_from_config
from sampan.models.local_training import Rows, TrainConfig, checked_train_config, train
from sampan.privacy.dpsgd import DPSGDConfig, planned_steps
from sampan.privacy.ledger import BudgetExceeded, PrivacyEvent
from sampan.privacy.local_comparison_mod import local_comparison_mod
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.horizontal.party import HorizontalParty
    from sampan.horizontal.run_state import RunState
    from sampan.horizontal.workflow import HorizontalWorkflow

__all__ = ["BANK_ALONE", "BANK_ALONE_REPLY", "bank_alone_handler", "compare_banks", "mount_bank_alone"]

BANK_ALONE = "bank_alone"
BANK_ALONE_REPLY = "bank_alone_result"
# trainer(model, start, X, y, cfg, seed) -> local-only parameters (plain SGD here; DP-SGD in the mod); X is the
# party's `ScaledRows` (rows filled and standardised on access), never a whole standardised copy
Trainer = Callable[[Model, np.ndarray, Rows, np.ndarray, TrainConfig, int], np.ndarray]


def plain_trainer(model: Model, start: np.ndarray, X: Rows, y: np.ndarray, cfg: TrainConfig,
                  seed: int) -> np.ndarray:
    """The bank's local-only training without DP: the run's local optimiser on its own rows."""
    return train(model, start, X, y, cfg, np.random.default_rng(seed)).params


def compare_with(party: HorizontalParty, msg: Message, trainer: Trainer) -> Message:
    """Train the local-only model with ``trainer``; both models' holdout histograms by label (at most `DP_BINS`
    bins, sums at bin midpoints: every field a function of the label counts, no holdout score leaves)."""
    if len(party.test_data) == 0:
        raise ValueError(f"party {party.name!r} has no holdout rows to compare a local-only model on")
    bins = msg.meta.get("bins", DP_BINS)
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= DP_BINS:
        raise ValueError(f"party {party.name!r} refuses bins={bins!r}: at most {DP_BINS} bins")
    model = model_from_config(msg.meta["model"])
    consortium = np.asarray(msg.arrays["params"], dtype=float)
    if int(model.n_params) != consortium.size:  # before any allocation: no larger than what travelled (R13-BA-5)
        raise ValueError(f"party {party.name!r} refuses 'bank_alone': the model config has {model.n_params} "
                         f"parameters, the consortium model sent {consortium.size}")
    width = party.train_data.X.shape[1]
    expected = getattr(model, "n_features", width)
    if expected != width:
        raise ValueError(f"party {party.name!r} has {width} features but the model expects {expected}")
    cfg = checked_train_config(msg.meta["train"])
    seed = int(msg.meta["seed"])
    # the rows as the model sees them (the run's agreed fill values, `arrays.impute`, and scaler), computed per
    # minibatch chunk and per row block, never as whole standardised copies (review R15-HLR-1); the same rows
    # `fit` and `evaluate` read, checked the same way (scaler, unfilled NaN)
    X_train = party._scaled.rows("train", party.train_data.X, msg.arrays)
    X_test = party._scaled.rows("test", party.test_data.X, msg.arrays)
    y_train, y_test = party.train_data.y, party.test_data.y
    assert y_train is not None and y_test is not None
    local = trainer(model, model.init_params(np.random.default_rng(seed)), X_train, y_train, cfg, seed)
    arrays: dict[str, np.ndarray] = {}
    for name, params in (("local", local), ("consortium", consortium)):
        histogram = ScoreHistogram.from_scores(y_test, block_scores(X_test, model, params), bins).centred()
        arrays.update({f"{name}.{k}": v for k, v in histogram.to_arrays().items()})
    return msg.reply(BANK_ALONE_REPLY, arrays=arrays, meta={"n": len(y_test)})


def bank_alone_handler(party: HorizontalParty) -> Handler:
    """The exact `bank_alone` handler of one party (its privacy mod wraps it)."""
    def handle(msg: Message) -> Message:
        return compare_with(party, msg, plain_trainer)
    return handle


def mount_bank_alone(app: PartyApp, party: HorizontalParty) -> None:
    """Register `bank_alone` on a party's app, with its privacy mod (`sampan.privacy.local_comparison_mod`)."""
    app.register(BANK_ALONE, bank_alone_handler(party))
    app.mods.append(local_comparison_mod(party.dp, lambda msg, trainer: compare_with(party, msg, trainer)))


def histograms(reply: Message) -> dict[str, ScoreHistogram]:
    """The two histograms of a `bank_alone_result` reply (validated: they came from another party)."""
    return {name: ScoreHistogram.from_arrays({k.removeprefix(f"{name}."): v for k, v in reply.arrays.items()
                                              if k.startswith(f"{name}.")}) for name in ("local", "consortium")}


def _auc(histogram: ScoreHistogram) -> float | None:
    return float(histogram.auc()) if 0 < float(histogram.pos.sum()) < histogram.n else None


def _request_meta(workflow: HorizontalWorkflow, state: RunState, parties: list[str]) -> dict[str, dict[str, Any]]:
    """Per bank: the model, local training settings, seed and (under DP) the DP2 settings and released count."""
    section = workflow.config.bank_alone
    assert section is not None
    train_cfg = {**workflow._train_config(state.round), "epochs": section.epochs, "max_steps": None}
    dp_metas, _ = workflow.privacy.fit_meta(state.round, parties, workflow.privacy.released_rows(
        {p: int(info["n_train"]) for p, info in state.parties.items()}))
    metas = {}
    for party in parties:
        dp = {k: v for k, v in dp_metas[party].items() if k in ("dp2", "public_rows")}
        metas[party] = {"model": state.model_config, "train": train_cfg, **dp,
                        "seed": derive_seed(workflow.seed, BANK_ALONE, party), "bins": DP_BINS}
    return metas


def planned_charges(metas: dict[str, dict[str, Any]], step: int) -> list[PrivacyEvent]:
    """The DP2 events of the local-only trainings (none without DP): known before any bank trains."""
    events = []
    for party, meta in metas.items():
        if "dp2" not in meta:
            continue
        settings = {k: v for k, v in meta["dp2"].items() if k in ("noise_multiplier", "max_grad_norm",
                                                                   "sampling_rate")}
        dp = DPSGDConfig(**settings, public_rows=int(meta["public_rows"]))
        steps, q = planned_steps(int(meta["public_rows"]), checked_train_config(meta["train"]), dp)
        events.append(PrivacyEvent(party=party, level="DP2", mechanism="subsampled_gaussian",
                                   noise_multiplier=dp.noise_multiplier, sampling_rate=q, count=max(int(steps), 1),
                                   step=step, note="DP-SGD local-only model (each bank alone)"))
    return events


def _bank_figures(party: str, outcome: Message | BaseException) -> dict[str, Any]:
    """One bank's AUC pair, or why it is not available: a bank's refusal or failure never fails the run, which
    is already trained and evaluated (review R13-BA-3)."""
    try:
        if isinstance(outcome, BaseException):  # a refusal, an error or a dropout (`DROPOUT_ERRORS`)
            raise outcome
        pair = histograms(outcome)
    except (PartyError, TimeoutError, ConnectionError, ValueError, KeyError, TypeError) as exc:
        return {"n_holdout": None, "local_auc": None, "consortium_auc": None, "gain": None,
                "unavailable": f"not available for {party}: {exc}"}
    local, consortium = _auc(pair["local"]), _auc(pair["consortium"])
    return {"n_holdout": int(outcome.meta["n"]), "local_auc": local, "consortium_auc": consortium,
            "gain": None if local is None or consortium is None else consortium - local}


def compare_banks(workflow: HorizontalWorkflow, state: RunState) -> dict[str, Any]:
    """The coordinator's step: charge (write-ahead), one `bank_alone` fan-out, an AUC pair per bank (or, for a
    bank that refused or failed, why it is not available: the run still completes)."""
    parties = sorted(state.parties)
    step = state.round + 1
    metas = _request_meta(workflow, state, parties)
    try:
        workflow.privacy.charge(planned_charges(metas, step))
    except BudgetExceeded as exc:
        workflow.recorder.event("bank_alone_skipped", {"reason": str(exc)})
        return {"skipped": str(exc)}
    arrays = {"params": state.params, **state.scaler}
    messages = (Message(workflow.run_id, step, COORDINATOR, p, BANK_ALONE, arrays=arrays, meta=metas[p])
                for p in parties)
    banks = {party: _bank_figures(party, outcome)
             for party, outcome in exchange_settled(workflow.transport, messages).items()}
    summary = {"epochs": metas[parties[0]]["train"]["epochs"], "dp": any("dp2" in m for m in metas.values()),
               "banks": dict(sorted(banks.items()))}
    workflow.recorder.event("bank_alone", summary)
    for kind, detail in workflow._take_round_events(step):  # this exchange's traffic, for the receipt
        workflow.recorder.event(kind, detail)
    return summary
