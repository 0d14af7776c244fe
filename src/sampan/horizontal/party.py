"""Party-side handlers for horizontal FL.

What a party discloses, per message kind (the catalogue `sampan.wire.catalogue` lists every field with
its protection, and the privacy receipt prints it):
- `describe`: row counts of its train/test split, the training positive rate, its feature names. Under
  `[privacy]` the request carries `dp_count`: the training row count is then released once per run
  through a Gaussian mechanism (sensitivity 1, charged by the coordinator as DP1 before the request and
  by the party's own ledger) and the positive rate is not sent; the holdout count stays exact (holdout
  rows are outside the DP unit);
- `stats`: per-feature count, sum and sum of squares of its training rows (for standardisation);
  with DP1 on, clipped to public ranges and released once per run through one Gaussian mechanism (a
  repeated request gets the same release; configuration refuses `[privacy]` with standardisation but
  without DP1);
- `impute_stats` (`sampan.horizontal.imputation`): for the columns its schema imputes, the count and sum of
  present training cells (mean) or a histogram over public bins (median); without DP and public bounds, its
  min and max of a median column. Under DP one Gaussian release per run, charged at the party
  (`sampan.privacy.imputation`); the agreed fill values come back with every request (``arrays.impute``);
- `fit`: its model delta after local training, the number of training rows and its mean local loss;
  under `[privacy]` only the delta (the output of DP-SGD and/or DP3 clipping/noise) and, with adaptive
  clipping, the DP3 indicator — no loss, no row count, no clipped share, no DP-SGD steps or rate. Its
  DP-SGD sampling rate comes from its own released count for the run (else the request's
  `public_rows`), never from its exact n;
- `evaluation`: counts of holdout scores per probability bin split by label, score/loss/Brier sums, and
  its own holdout metrics. The coordinator chooses the model and the bins, so this is a release about
  holdout rows (outside the DP unit), not an aggregate that hides them: a model that is one feature's
  weight makes each score that feature, and the reply then gives each holdout row's label and any
  coordinator-chosen function of the row to the bin resolution (at most `MAX_BINS` = 2000 bins;
  bigger requests are refused). Under DP (review R8-2) the bins are exactly `DP_BINS` = 100, the sums
  are computed at bin midpoints and no local metrics are sent, so the reply is a function of the
  2×100 label counts (each holdout row's label and any coordinator-chosen function of the row, to 100
  levels, per evaluation); one model per run (retries of the same request are answered alike; a
  deployed party records it in its state dir, so a restart does not reset it), no training after
  it, no evaluation without a holdout, and models evaluated in at most `max_evaluations` runs over
  the party's life, DP or not (deployed: `[privacy] max_evaluations`, counted in its state dir; without
  DP a run may evaluate one model per request, so the cap bounds runs, not models). The exact
  counts reveal the holdout's size and label composition; a deployed party draws its holdout per
  row by a keyed hash (`sampan.deploy.party_agent`), so they do not reveal the training count. With
  secure aggregation, one masked vector of the histogram and sums (no local metrics), at exactly the
  default bins (`DP_BINS` under DP, else `DEFAULT_BINS`); an evaluation with the same integer counts and n
  (carried or separate, any frac_bits or scaler), and any evaluation of the same model (digested by what it
  computes: the scaler folded into the first layer; any bins, any round or run), is unmasked for one
  survivor set only (`sampan.privacy.secagg`, `sampan.privacy.fit_evaluation.evaluation_lock`).

Every request's scaler must be finite with scale > 0 (`check_scaler`; under DP the guarantee does not rest
on it: a non-finite per-example gradient or update contributes zero), every `fit`'s training settings
finite and bounded (`checked_train_config`), and a tree (gbdt) payload is evaluated only in a gbdt job.

The party does not rely on the coordinator for any of this: its handlers here compute exact answers only,
and the privacy mods composed around them (`sampan.privacy.mods`, by `sampan.horizontal.capability`)
release, noise, mask and refuse (`PartyPrivacyPolicy`): under a policy with a
required level (a deployed party adds the DP levels its accepted job announced, from `open_run`), or
once it answered a DP request of the run, it refuses `describe`/`stats` without DP; under a policy
requiring "DP" it refuses `fit` without dp2 or dp3, and after a DP2/DP3 fit in a run it refuses a fit
of the run with other DP levels (DP cannot be switched off half-way);
it refuses DP below its minimum noise, distributed DP3 without secure aggregation, and central DP3
unless its policy trusts the coordinator with clipped updates (`trust_coordinator_for_central_dp3`).

With secure aggregation on (`sampan.privacy.secagg`), `fit` instead returns one masked vector in
Z_2^64 — [update (clipped and noise-shared under DP3, else weighted by n/N), DP3 indicator, weighted
loss, weight n/N] — which is uniformly random to the coordinator; under `[privacy]` the loss slot is
0 and the weight uses the released row count. The `secagg_*` steps disclose public keys signed with the
party's certificate, sealed Shamir shares for neighbours, a signature over the survivor set, and, at
unmasking, one share per neighbour (never both kinds for one neighbour, recorded before they leave).
Without DP, a secure `fit` may carry ``evaluate``: the party first evaluates the model it was sent (the
one the round starts from) on its holdout and masks [fit vector | evaluation vector] as ONE input, so a
round is one SecAgg instance; the evaluation is admitted exactly like a separate `evaluate` of that model
(default bins only, counted against `max_evaluations`; at its cap the party still trains and sends an
empty evaluation part, zeros and n = 0, the coordinator learning only the summed n; the part is clamped at
`EVAL_MAX_ABS`, not the fit's max_abs), and the party locks BOTH model digests (fit and
evaluate) of the vector to its first survivor set: neither part is unmasked for another set, by a retry,
a replayed fit or a separate evaluation. Under DP a fit that carries an evaluation is refused (the one
evaluation is of the released model, in its own request).

What each role learns: the coordinator learns exactly the fields above (or, under SecAgg, their sum
over the round's contributors: the summed update and, when the fit carried one, the summed evaluation of
the round's incoming model, over the same survivor set); other parties learn nothing from these handlers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.data import PartyData
from sampan.data.missing import MissingColumn
from sampan.horizontal.gbdt import GBDT_KIND, predict_gbdt_payload
from sampan.horizontal.imputation import impute_statistics
from sampan.horizontal.party_rows import ScaledRows, block_moments, block_scores
from sampan.horizontal.secure_inputs import evaluation_from_vector, evaluation_vector, secagg_vector
from sampan.metrics import ScoreHistogram, binary_metrics
from sampan.metrics.histogram import DEFAULT_BINS, MAX_BINS
from sampan.models import Model, model_from_config
from sampan.models.class_weights import ClassWeighted
from sampan.models.local_training import TrainConfig, checked_train_config, train
from sampan.privacy.imputation import IMPUTE_KIND, imputation_mod
from sampan.privacy.mods import PartyDPState, dp1_moments, privacy_mods, secagg_handlers
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.privacy.secagg import SecAggClient
from sampan.wire import Message

__all__ = ["HorizontalParty", "dp1_moments", "evaluation_from_vector", "evaluation_vector", "secagg_vector",
           "standardize"]


def check_scaler(arrays: Mapping[str, np.ndarray], width: int) -> None:
    """The scaler a request carries must be finite with a positive scale, one entry per feature (review
    R12-HOR-6): a coordinator-chosen ``scale = 1e-308`` turns large feature values into ±inf. What the party
    accepts: any such scaler, DP or not; it cannot check a scaler against the pooled DP1 release (the
    coordinator derives it from every party's noised moments), so its DP guarantee does not rest on the scaler:
    DP-SGD and DP3 map a non-finite per-example gradient or update to zero (`sampan.privacy.dpsgd.clipped_sum`,
    `sampan.privacy.dp3.clip_update`). The check depends on the request only, never on the rows."""
    if ("mean" in arrays) != ("scale" in arrays):
        raise ValueError("the scaler needs both 'mean' and 'scale'")
    if "mean" not in arrays:
        return
    mean, scale = np.asarray(arrays["mean"], dtype=np.float64), np.asarray(arrays["scale"], dtype=np.float64)
    if mean.shape != (width,) or scale.shape != (width,):
        raise ValueError(f"the scaler has shapes {mean.shape}/{scale.shape}; the rows have {width} features")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("the scaler must be finite with scale > 0 (a non-finite or non-positive scale would make "
                         "features infinite)")


def standardize(X: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Apply the federation's scaler (sent by the coordinator, checked by `check_scaler`) to local rows."""
    check_scaler(arrays, X.shape[1])
    if "mean" not in arrays:
        return X
    with np.errstate(over="ignore"):  # a tiny finite scale may still overflow a value: the DP paths zero it
        return (X - arrays["mean"]) / arrays["scale"]


class _ScaledCache:
    """The party's rows as the model sees them (`ScaledRows`: filled and standardised per block, never a whole
    copy), rebuilt only when the request's scaler or fill values change (not every round)."""

    def __init__(self, columns: tuple[MissingColumn, ...] = ()) -> None:
        self._key: bytes | None = None
        self._rows: dict[str, ScaledRows] = {}
        self.columns = columns  # its columns that may hold NaN (filled by the request's `impute` values)

    def rows(self, name: str, X: np.ndarray, arrays: Mapping[str, np.ndarray]) -> ScaledRows:
        """Lazy rows: checked once (scaler, unfilled NaN), then each access fills and standardises its rows."""
        key = b"".join(np.asarray(arrays[k]).tobytes() for k in ("mean", "scale", "impute") if k in arrays)
        if key != self._key:
            self._key, self._rows = key, {}
        if name not in self._rows:
            check_scaler(arrays, X.shape[1])
            self._rows[name] = ScaledRows(X, arrays, self.columns)
        return self._rows[name]


def _compose(mods: list[Mod], handler: Handler) -> Handler:
    call = handler
    for mod in reversed(mods):
        call = (lambda m, inner: lambda message: m(message, inner))(mod, call)
    return call


class HorizontalParty:
    """Holds one party's train/test data; answers the horizontal workflow's requests.

    `core_handlers` are the exact computations; `mods` the party's privacy around them (`sampan.privacy.mods`).
    `handlers()` and the `describe`/`stats`/`fit`/`evaluate` attributes are the composed, protected endpoints."""

    def __init__(self, name: str, train_data: PartyData, test_data: PartyData,
                 policy: PartyPrivacyPolicy | None = None, *, secagg: SecAggClient | None = None,
                 state_dir: str | os.PathLike[str] | None = None, max_evaluations: int | None = None,
                 trees: bool = False, announced_dp: bool = False) -> None:
        if len(train_data) == 0:
            raise ValueError(f"party {name!r} has no training rows")
        self.name, self.train_data, self.test_data = name, train_data, test_data
        self.trees = trees  # a gbdt job: only then does `evaluate` score tree payloads (review R12-HOR-1)
        self._models: dict[str, Model] = {}
        self._scaled = _ScaledCache(train_data.missing_columns)
        # its DP memory: released counts and statistics, DP runs, the models it evaluated (a deployed party keeps
        # those in its state dir, `evaluated.json`, so a restarted agent still refuses a second model in a run)
        self.dp = PartyDPState(name, policy or PartyPrivacyPolicy(), len(train_data), len(test_data),
                               Path(state_dir) / "evaluated.json" if state_dir is not None else None,
                               max_evaluations)
        # deployments inject a client with the organisation's identity and state dir, simulations one per party
        # from the run's simulated consortium; without one the party refuses secure aggregation requests
        self.secagg = secagg
        self.mods: list[Mod] = privacy_mods(self.dp, fit_with=self._fit_with, secagg_client=lambda: self.secagg,
                                            vectorize=secagg_vector, evaluate_with=self._evaluate)
        # DP1 on imputation statistics, next to the handler; requests checked against its own schema's columns
        self.mods.append(imputation_mod(self.dp, train_data.missing_columns, announced_dp=announced_dp))
        composed = self.handlers()
        self.describe, self.stats = composed["describe"], composed["stats"]
        self.fit, self.evaluate = composed["fit"], composed["evaluate"]

    @property
    def policy(self) -> PartyPrivacyPolicy:
        return self.dp.policy

    @property
    def _released_rows(self) -> dict[str, int]:
        return self.dp.released_rows

    @property
    def secagg(self) -> SecAggClient:
        if self._secagg is None:
            raise ValueError(f"party {self.name!r} has no secure aggregation client (its identity and the consortium "
                             "verifier): it refuses secure aggregation requests")
        return self._secagg

    @secagg.setter
    def secagg(self, client: SecAggClient | None) -> None:
        self._secagg = client

    def core_handlers(self) -> dict[str, Handler]:
        """Message kind -> exact handler (no privacy): mount with `mods` around them (`PartyApp(name, mods)`)."""
        return {"describe": self._describe, "stats": self._stats, "fit": self._fit, "evaluate": self._evaluate,
                IMPUTE_KIND: lambda msg: impute_statistics(self.train_data, msg),
                **secagg_handlers(lambda: self.secagg)}

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        """Message kind -> handler with the party's privacy mods composed around it."""
        return {kind: _compose(self.mods, handler) for kind, handler in self.core_handlers().items()}

    def _model(self, config: Mapping[str, Any]) -> Model:
        key = json.dumps(config, sort_keys=True)
        if key not in self._models:
            model = model_from_config(config)
            width = self.train_data.X.shape[1]
            expected = getattr(model, "n_features", width)
            if expected != width:
                raise ValueError(f"party {self.name!r} has {width} features but the model expects {expected}")
            self._models[key] = model
        return self._models[key]

    def _describe(self, msg: Message) -> Message:
        y = self.train_data.y
        return msg.reply("describe", meta={
            "n_train": len(self.train_data),
            "n_test": len(self.test_data),
            "positive_rate": float(np.mean(y)) if y is not None and len(y) else None,
            "feature_names": list(self.train_data.feature_names),
        })

    def _stats(self, msg: Message) -> Message:
        """Count, sums and sums of squares of the training rows; with ``clip_bounds``, of the features clipped
        to those public ranges and centred/scaled to [-1, 1] (bounded sensitivity, see `clipped_moments`)."""
        fill = {k: msg.arrays[k] for k in ("impute",) if k in msg.arrays}  # the agreed fill values, no scaler
        rows = ScaledRows(self.train_data.X, fill, self.train_data.missing_columns)
        if "clip_bounds" in msg.meta:
            n, sums, sums_sq = block_moments(rows, msg.meta["clip_bounds"])
            return msg.reply("stats", arrays={"sum": sums, "sum_sq": sums_sq}, meta={"n": n})
        n, sums, sums_sq = block_moments(rows)
        return msg.reply("stats", arrays={"sum": sums, "sum_sq": sums_sq}, meta={"n": int(n)})

    def _fit_with(self, msg: Message, trainer: Callable[..., tuple[Any, dict[str, Any]]]) -> Message:
        """Local training of the global model by ``trainer``; the reply holds the delta, n and the mean loss."""
        model = self._model(msg.meta["model"])
        cfg = checked_train_config(msg.meta["train"])
        if cfg.class_weight is not None:  # weighted before DP-SGD clips each example (sensitivity unchanged)
            model = ClassWeighted(model, cfg.class_weight)
        X = self._scaled.rows("train", self.train_data.X, msg.arrays)  # rows computed per minibatch chunk
        y = self.train_data.y
        assert y is not None
        global_params = msg.arrays["params"]
        result, extra = trainer(model, global_params, X, y, cfg, global_params if cfg.proximal_mu else None)
        return msg.reply("fit_result", arrays={"update": result.params - global_params},
                         meta={"n": len(X), **extra, "loss": result.mean_loss})

    def _fit(self, msg: Message) -> Message:
        seed = int(msg.meta["seed"])

        def plain(model: Model, params: np.ndarray, X: np.ndarray, y: np.ndarray, cfg: TrainConfig,
                  anchor: np.ndarray | None) -> tuple[Any, dict[str, Any]]:
            return train(model, params, X, y, cfg, np.random.default_rng(seed), anchor=anchor), {}
        return self._fit_with(msg, plain)

    def _evaluate(self, msg: Message) -> Message:
        """Holdout (else training) scores binned by label, loss/Brier sums and local metrics, all exact."""
        bins = msg.meta.get("bins", DEFAULT_BINS)
        if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
            raise ValueError(f"party {self.name!r} refuses bins={bins!r}: at most {MAX_BINS} bins")
        part = "test" if len(self.test_data) else "train"
        data = self.test_data if part == "test" else self.train_data
        y = data.y
        assert y is not None
        if (msg.meta.get("model") or {}).get("kind") == GBDT_KIND:  # trees: bin edges + JSON (no scaler)
            if not self.trees:
                raise ValueError(f"party {self.name!r} refuses a gbdt evaluation outside a gbdt job (the job it "
                                 "accepted trains no trees)")
            # trees route a missing cell themselves, as in training (review R13-SCO-11: no fill values, none needed)
            p = predict_gbdt_payload(msg.meta["model"], msg.arrays, data.X)
        else:
            rows = self._scaled.rows(part, data.X, msg.arrays)
            p = block_scores(rows, self._model(msg.meta["model"]), msg.arrays["params"])  # scores: one vector
        histogram = ScoreHistogram.from_scores(y, p, bins)
        p_clip = np.clip(p, 1e-12, 1 - 1e-12)
        local: dict[str, float | None] = {}
        if 0 < y.sum() < len(y):
            local = {k: (None if not np.isfinite(v) else float(v)) for k, v in binary_metrics(y, p).items()}
        return msg.reply("evaluation", arrays=histogram.to_arrays(), meta={
            "n": len(y),
            "loss_sum": float(-np.sum(y * np.log(p_clip) + (1 - y) * np.log(1 - p_clip))),
            "brier_sum": float(np.sum((p - y) ** 2)),
            "metrics": local,
        })
