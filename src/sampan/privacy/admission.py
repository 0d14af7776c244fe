"""A party's own DP admission (`policy_mod`) and the state its privacy mods share (`PartyDPState`).

Admission runs first, before any other mod or handler: the party's `PartyPrivacyPolicy` (minimum noise,
required levels, its own ledger charged write-ahead, trust in the coordinator for central DP3); DP cannot be
switched off (or changed) half-way through a run; one evaluated model per DP run (`request_digest` of the
public inputs) and at most ``max_evaluations`` runs evaluating its holdout, recorded in the party's state dir
before the evaluation leaves; evaluation bins within the DP limits. The mods that release data are in
`sampan.privacy.mods`.

What each role learns: nothing from this module itself; a refused request returns only the refusal (which
rule, which value) to the coordinator, and the state it keeps (`PartyDPState`, the evaluation record) never
leaves the party.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.files import PRIVATE_FILE, atomic_write_bytes, private_directory
from sampan.metrics.histogram import DEFAULT_BINS, DP_BINS, MAX_BINS
from sampan.models import model_from_config
from sampan.privacy.fit_evaluation import (
    evaluation_request,
)
from sampan.privacy.model_digest import canonical_arrays
from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused
from sampan.wire import Message

__all__ = ["EvaluationCapReached", "PartyDPState", "policy_mod", "request_digest"]


@dataclass
class PartyDPState:
    """What a party remembers about DP across its requests; shared by its mods (never sent anywhere)."""

    name: str
    policy: PartyPrivacyPolicy
    train_rows: int
    test_rows: int
    evaluated_path: Path | None = None
    max_evaluations: int | None = None  # most runs it evaluates a model in, DP or not (None: unbounded)
    released_rows: dict[str, int] = field(default_factory=dict)  # run id -> count released under DP (once)
    released_stats: dict[str, tuple[float, np.ndarray, np.ndarray]] = field(default_factory=dict)  # run -> DP1
    dp_runs: set[str] = field(default_factory=set)  # runs in which this party answered a DP request
    dp_fit: dict[str, frozenset[str]] = field(default_factory=dict)  # run -> DP levels of its first DP fit
    evaluated: dict[str, str] = field(default_factory=dict)  # run -> digest of the model it evaluated
    # run -> digests of every model it evaluated in the run (without DP a run evaluates one per request): the
    # group release is answered only on one of them (review R13-GRP-8)
    evaluated_models: dict[str, set[str]] = field(default_factory=dict)
    # admission (`policy_mod`) is check-then-record: concurrent requests of a party take turns through it
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.evaluated = self.load_evaluated()
        path = self.evaluated_path.with_name("dp-runs.json") if self.evaluated_path is not None else None
        self.dp_runs = DPRuns(self.name, path, self.dp_runs)

    @property
    def state_dir(self) -> Path | None:
        """The party's state folder (that of `evaluated.json`), where its per-run marks persist; None: memory."""
        return self.evaluated_path.parent if self.evaluated_path is not None else None

    def under_dp(self, run_id: str) -> bool:
        """Its policy requires a level, or it already answered a DP request of the run (no switching DP off)."""
        return self.policy.requires_dp() or run_id in self.dp_runs

    def private(self, msg: Message) -> bool:
        return _private(msg.meta) or self.under_dp(msg.run_id)

    def public_rows(self, msg: Message) -> int | None:
        """The row count a request under DP may depend on: this party's own released count for the run, else
        the request's `public_rows` (a value the coordinator chose: q and steps from it reveal nothing of n);
        never the exact n. DP-SGD without either is refused by the policy (q = batch/n would depend on n)."""
        if msg.run_id in self.released_rows:
            return self.released_rows[msg.run_id]
        public = msg.meta.get("public_rows")
        if public is None:
            return None
        if isinstance(public, bool) or not isinstance(public, int) or public < 1:
            raise PolicyRefused(f"party {self.name!r} refuses public_rows={public!r}: not a positive row count")
        return public

    def load_evaluated(self) -> dict[str, str]:
        if self.evaluated_path is None or not self.evaluated_path.exists():
            return {}
        try:
            data = json.loads(self.evaluated_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"party {self.name!r}: its record of evaluated models '{self.evaluated_path}' is "
                             f"unreadable ({exc}); refusing to start (restore it: it bounds evaluations under "
                             "DP)") from None
        return {str(k): str(v) for k, v in data.items()}


class DPRuns(set[str]):
    """The runs in which the party answered a DP request, kept in its state dir (`dp-runs.json`, written before
    the reply leaves): a restarted party still refuses exact answers in a DP run (reviews R13-BA-4, R13-GRP-4)."""

    def __init__(self, party: str, path: Path | None, runs: set[str] | None = None) -> None:
        super().__init__(runs or ())
        self.party, self.path = party, path
        super().update(self._stored())

    def _stored(self) -> set[str]:
        if self.path is None or not self.path.exists():
            return set()
        try:
            return {str(r) for r in json.loads(self.path.read_bytes())}
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"party {self.party!r}: its record of DP runs '{self.path}' is unreadable ({exc}); "
                             "refusing to go on (restore it: it keeps DP on in the runs it answered under DP)"
                             ) from None

    def add(self, run_id: str) -> None:
        if run_id in self:
            return
        super().add(run_id)
        if self.path is not None:  # merged with the file: another instance of the party may have added runs
            super().update(self._stored())
            private_directory(self.path.parent)
            atomic_write_bytes(self.path, json.dumps(sorted(self)).encode(), mode=PRIVATE_FILE)


def _private(meta: Mapping[str, Any]) -> bool:
    """A request made under `[privacy]` (any level): the coordinator sends the released row count."""
    return "public_rows" in meta or "dp2" in meta or "dp3" in meta


def _with_meta(msg: Message, meta: Mapping[str, Any]) -> Message:
    return Message(msg.run_id, msg.step, msg.sender, msg.recipient, msg.kind, dict(msg.arrays), dict(meta))




def request_digest(kind: str, msg: Message) -> str:
    """Digest of the public inputs a reply is computed from (global model, scaler, tree payload, model config:
    `MODEL_ARRAYS`): SecAgg binds
    every attempt on one model to one survivor set (`SecAggClient.masked_input`), and under DP a party
    evaluates one model per run. Canonical by what the model COMPUTES (reviews R7-2, R12-SAC-1/3): the model
    config as `model_from_config` rebuilds it; the scaler folded into the first layer (`canonical_arrays`), so a
    scaler that does not change the function (identity, mean 1e-300, or params pre-multiplied by the scale) does
    not change the digest; a tree payload's edges are in raw units (its scaler is unused and not digested)."""
    config = msg.meta.get("model")
    try:
        if isinstance(config, Mapping):  # anything else cannot be rebuilt: digest it as sent
            config = model_from_config(config).config()
    except (TypeError, ValueError, KeyError, AttributeError):
        pass  # the handler refuses it with a clear error; the digest only needs to be deterministic
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, array in canonical_arrays(config, msg.arrays).items():
        digest.update(f"|{name}|{array.shape}|".encode() + array.tobytes())
    return f"{kind}/{digest.hexdigest()}"


# --- admission -------------------------------------------------------------------------------------
def policy_mod(state: PartyDPState) -> Mod:
    """The party's own rules, checked before any handler computes anything. Admission runs under the state's
    lock, so two concurrent requests cannot both pass a check that the other's admission would fail (two
    models evaluated in one DP run, a fit after the run's evaluation); `describe`/`stats` are answered under
    it too, so a run's DP1 release is drawn (and charged) once."""
    def mod(msg: Message, inner: Handler) -> Message:
        with state.lock:
            msg = _admitted(state, msg)
            if msg.kind in ("describe", "stats"):
                return inner(msg)
        return inner(msg)
    return mod


def _admitted(state: PartyDPState, msg: Message) -> Message:
    """The request after the party's admission rules (a refusal raises `PolicyRefused`); call under the lock."""
    if msg.kind == "describe":
        if "dp_count" in msg.meta and msg.run_id in state.released_rows:  # a repeat: the same release
            return msg
        state.policy.admit_describe(state.name, msg.meta, dp_run=state.under_dp(msg.run_id))
        if "dp_count" in msg.meta:
            state.dp_runs.add(msg.run_id)
    elif msg.kind == "stats":
        if "dp1" in msg.meta:
            if msg.run_id not in state.released_stats:
                state.policy.admit_stats(state.name, msg.meta)  # refuses DP1 noise under the minimum
                state.dp_runs.add(msg.run_id)
        else:  # exact statistics: refused under DP
            state.policy.admit_stats(state.name, msg.meta, dp_run=state.under_dp(msg.run_id))
    elif msg.kind == "fit":
        if "evaluate" in msg.meta:  # refused before the fit's admission charges anything (DP)
            _check_carried_evaluation(state, msg)
        _admit_fit(state, msg)
        if "evaluate" in msg.meta:  # the evaluation it carries: the rules of a separate `evaluate`
            try:
                carried: dict[str, Any] = {"bins": _admit_evaluate(state, evaluation_request(msg))}
            except EvaluationCapReached:  # it still trains; its evaluation part is empty (R12-SAC-4)
                carried = {"bins": evaluation_request(msg).meta["bins"], "empty": True}
            msg = _with_meta(msg, {**msg.meta, "evaluate": carried})
    elif msg.kind == "evaluate":
        msg = _with_meta(msg, {**msg.meta, "bins": _admit_evaluate(state, msg)})
    return msg


def _admit_fit(state: PartyDPState, msg: Message) -> None:
    private = state.private(msg)
    if private and msg.run_id in state.evaluated:
        raise PolicyRefused(f"party {state.name!r} refuses 'fit' in run {msg.run_id!r} after its evaluation: under "
                            "DP the run's one evaluation is on the released model, after the last round")
    public_rows = state.public_rows(msg) if private else None
    request = {**msg.meta, "public_rows": public_rows} if public_rows is not None else dict(msg.meta)
    attempt = str((msg.meta.get("secagg") or {}).get("label") or "")
    levels = frozenset(k for k in ("dp2", "dp3") if k in msg.meta)
    first = state.dp_fit.get(msg.run_id)
    if first is not None and levels != first:  # DP training cannot be switched off (or changed) half-way
        raise PolicyRefused(f"party {state.name!r} refuses 'fit' with DP {sorted(levels)} in run {msg.run_id!r}: "
                            f"its earlier rounds of the run were trained under {sorted(first)}")
    # minimum noise, required levels, its own budget (charged write-ahead)
    state.policy.admit_fit(state.name, request, state.train_rows, step=msg.step, attempt=attempt)
    if private:
        state.dp_runs.add(msg.run_id)
    if levels:
        state.dp_fit.setdefault(msg.run_id, levels)


def _check_carried_evaluation(state: PartyDPState, msg: Message) -> None:
    """A `fit` may carry the evaluation of its model only under SecAgg and without DP: under DP the run's one
    evaluation is of the released model, after the last round, in its own request (and exact evaluations in
    clear gain nothing from riding on a fit)."""
    if "secagg" not in msg.meta or state.private(msg) or state.under_dp(msg.run_id):
        raise PolicyRefused(f"party {state.name!r} refuses a 'fit' that carries an evaluation in run {msg.run_id!r}"
                            ": only a secure (SecAgg) fit without DP may; under DP the one evaluation is of the "
                            "released model, in its own request")


class EvaluationCapReached(PolicyRefused):
    """The party's `max_evaluations` is spent: a separate `evaluate` is refused, a carried one is sent empty."""


def _admit_evaluate(state: PartyDPState, msg: Message) -> int:
    """The bins it evaluates into, after its evaluation rules. At most `MAX_BINS`, exactly `DP_BINS` under DP (a
    coordinator that picks the model and a fine binning reads each holdout row's score, i.e. a feature, and its
    label), exactly the default under SecAgg (a 2k-bin histogram merges into the k-bin one, so two binnings of
    one model over U minus v and over U would give v's histogram: review R11-2). Every run that evaluates the
    holdout counts against `max_evaluations` (review R11-5: each evaluation is an exact release about the same
    holdout rows); under DP a party evaluates ONE model per run (the released one; repeats of the same request
    are answered). Without DP a run evaluates a model per request: the cap then bounds runs, not models."""
    dp = state.under_dp(msg.run_id)
    default = DP_BINS if dp else DEFAULT_BINS
    bins = msg.meta.get("bins", default)
    limit = DP_BINS if dp else MAX_BINS
    fixed = dp or "secagg" in msg.meta
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= limit or (fixed and bins != default):
        raise PolicyRefused(f"party {state.name!r} refuses bins={bins!r}: it bins evaluation scores into at most "
                            f"{MAX_BINS} bins, into exactly {DP_BINS} under DP, and into exactly {default} under "
                            "secure aggregation")
    if dp and not state.test_rows:  # the training rows are the DP unit: never evaluated exactly
        raise PolicyRefused(f"party {state.name!r} refuses 'evaluate' under DP without a holdout: it would score "
                            "its training rows exactly")
    digest = request_digest("evaluate", msg)
    if state.evaluated_path is not None and msg.run_id not in state.evaluated:  # re-read: another instance
        state.evaluated = {**state.load_evaluated(), **state.evaluated}  # of this party may have answered
    first = state.evaluated.get(msg.run_id)
    if first is None and state.max_evaluations is not None and len(state.evaluated) >= state.max_evaluations:
        raise EvaluationCapReached(f"party {state.name!r} refuses an evaluation in run {msg.run_id!r}: it evaluated "
                            f"models in {len(state.evaluated)} runs (with or without DP), its maximum "
                            "(max_evaluations): each is an exact release about its holdout rows, which are "
                            "outside the DP unit")
    state.evaluated_models.setdefault(msg.run_id, set()).add(digest)
    if first is None:
        first = state.evaluated[msg.run_id] = digest
        if state.evaluated_path is not None:  # written before the evaluation leaves
            private_directory(state.evaluated_path.parent)
            atomic_write_bytes(state.evaluated_path, json.dumps(state.evaluated, sort_keys=True).encode(),
                               mode=PRIVATE_FILE)
    if dp and first != digest:
        raise PolicyRefused(f"party {state.name!r} refuses a second evaluation in run {msg.run_id!r}: under DP it "
                            "evaluates one model per run (the released one); this request names another model")
    return int(bins)
