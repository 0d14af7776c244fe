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
  default bins (`DP_BINS` under DP, else `DEFAULT_BINS`); an identical evaluation vector, and any
  evaluation of the same model (any bins, any round or run), is unmasked for one survivor set only
  (`sampan.privacy.secagg`).

The party does not rely on the coordinator for any of this (`PartyPrivacyPolicy`): under a policy with a
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

What each role learns: the coordinator learns exactly the fields above (or, under SecAgg, their sum
over the round's contributors); other parties learn nothing from these handlers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from sampan.data import PartyData
from sampan.files import PRIVATE_FILE, atomic_write_bytes, private_directory
from sampan.models.local_training import TrainConfig, train
from sampan.metrics import ScoreHistogram, binary_metrics
from sampan.metrics.histogram import DEFAULT_BINS, DP_BINS, MAX_BINS
from sampan.models import Model, model_from_config
from sampan.privacy.dp3 import party_release
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.dpsgd import DPSGDConfig, dp_sgd_train
from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused
from sampan.privacy.secagg import SecAggClient
from sampan.wire import Message


def standardize(X: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Apply the federation's scaler (sent by the coordinator) to local rows."""
    if "mean" not in arrays:
        return X
    return (X - arrays["mean"]) / arrays["scale"]


class _ScaledCache:
    """Standardised copies of a party's matrices, reused while the scaler is unchanged (every round)."""

    def __init__(self) -> None:
        self._key: bytes | None = None
        self._scaled: dict[str, np.ndarray] = {}

    def get(self, name: str, X: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        key = b"".join(arrays[k].tobytes() for k in ("mean", "scale") if k in arrays)
        if key != self._key:
            self._key, self._scaled = key, {}
        if name not in self._scaled:
            self._scaled[name] = standardize(X, arrays)
        return self._scaled[name]


def dp1_moments(X: np.ndarray, settings: Mapping[str, Any]) -> tuple[float, np.ndarray, np.ndarray]:
    """DP1: count and the first two moments of every feature under one Gaussian mechanism.

    Each column is clipped to its public range [lo, hi] and mapped to z = (x − mid)/half-width in
    [−1, 1] (centring first avoids the cancellation of E[x²] − E[x]² far from zero). One row adds at
    most 1 to the count and to every sum of z and of z², so the (1 + 2d)-vector has L2 sensitivity
    sqrt(1 + 2d) under add/remove-one-row; the noise is calibrated to it. Returns the noised count and
    the noised sums of z and z² (the coordinator maps them back with the same public ranges).
    """
    bounds = np.asarray(settings["bounds"], dtype=float)
    mid, half = bounds.mean(axis=1), (bounds[:, 1] - bounds[:, 0]) / 2
    Z = (np.clip(X, bounds[:, 0], bounds[:, 1]) - mid) / half
    vector = np.concatenate([[len(Z)], Z.sum(axis=0), np.einsum("ij,ij->j", Z, Z)])
    sensitivity = float(np.sqrt(vector.size))
    noised = GaussianMechanism(sensitivity, float(settings["noise_multiplier"]) * sensitivity).release(vector)
    d = X.shape[1]
    return float(noised[0]), noised[1:1 + d], noised[1 + d:]


class HorizontalParty:
    """Holds one party's train/test data; answers the horizontal workflow's requests."""

    def __init__(self, name: str, train_data: PartyData, test_data: PartyData,
                 policy: PartyPrivacyPolicy | None = None, *, secagg: SecAggClient | None = None,
                 state_dir: str | os.PathLike[str] | None = None, max_evaluations: int | None = None) -> None:
        if len(train_data) == 0:
            raise ValueError(f"party {name!r} has no training rows")
        self.name, self.train_data, self.test_data = name, train_data, test_data
        self._models: dict[str, Model] = {}
        self._scaled = _ScaledCache()
        self._released_rows: dict[str, int] = {}  # run id -> the row count released under DP (once per run)
        self._released_stats: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}  # run id -> its DP1 release
        self._dp_runs: set[str] = set()  # runs in which this party answered a DP request
        self._dp_fit: dict[str, frozenset[str]] = {}  # run id -> the DP training levels of its first DP fit
        self.max_evaluations = max_evaluations  # most runs it evaluates a model in, DP or not (None: unbounded)
        # run id -> digest of the one model it evaluated under DP; a deployed party keeps it in its state dir
        # (`evaluated.json`), so a restarted agent still refuses a second model in the run
        self._evaluated_path = Path(state_dir) / "evaluated.json" if state_dir is not None else None
        self._evaluated: dict[str, str] = self._load_evaluated()
        # deployments inject a client with the organisation's identity and state dir, simulations one per party
        # from the run's simulated consortium; without one the party refuses secure aggregation requests
        self.secagg = secagg
        self.policy = policy or PartyPrivacyPolicy()  # minimum noise + the party's own ledger (write-ahead)

    @property
    def secagg(self) -> SecAggClient:
        if self._secagg is None:
            raise ValueError(f"party {self.name!r} has no secure aggregation client (its identity and the consortium "
                             "verifier): it refuses secure aggregation requests")
        return self._secagg

    @secagg.setter
    def secagg(self, client: SecAggClient | None) -> None:
        self._secagg = client

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        """Message kind -> handler; the runtime mounts these on the party's PartyApp."""
        return {"describe": self.describe, "stats": self.stats, "fit": self.fit, "evaluate": self.evaluate,
                "secagg_keys": self.secagg_keys, "secagg_share": self.secagg_share,
                "secagg_consistency": self.secagg_consistency, "secagg_unmask": self.secagg_unmask}

    def _model(self, config: Mapping[str, Any]) -> Model:
        key = json.dumps(config, sort_keys=True)
        if key not in self._models:
            model = model_from_config(config)
            width = self.train_data.X.shape[1]
            if getattr(model, "n_features", width) != width:
                raise ValueError(f"party {self.name!r} has {width} features but the model expects {model.n_features}")
            self._models[key] = model
        return self._models[key]

    def _under_dp(self, run_id: str) -> bool:
        """This party answers under DP: its policy requires a level, or it already answered a DP request of the run
        (the coordinator cannot switch DP off half-way)."""
        return self.policy.requires_dp() or run_id in self._dp_runs

    def describe(self, msg: Message) -> Message:
        # one release per run: asking again (to average the noise away) gets the same answer, charged once
        if "dp_count" in msg.meta and msg.run_id in self._released_rows:
            return self._describe_reply(msg)
        # the count's noise meets the party's minimum; without dp_count refused under a DP policy
        self.policy.admit_describe(self.name, msg.meta, dp_run=self._under_dp(msg.run_id))
        if "dp_count" in msg.meta:  # under DP: the row count through a charged Gaussian, no positive rate
            self._dp_runs.add(msg.run_id)
            z = float(msg.meta["dp_count"]["noise_multiplier"])
            if msg.run_id not in self._released_rows:
                noised = float(GaussianMechanism(1.0, z).release(np.array([float(len(self.train_data))]))[0])
                self._released_rows[msg.run_id] = max(1, int(round(noised)))  # rounding, floor: post-processing
            return self._describe_reply(msg)
        y = self.train_data.y
        return msg.reply("describe", meta={
            "n_train": len(self.train_data),
            "n_test": len(self.test_data),
            "positive_rate": float(np.mean(y)) if y is not None and len(y) else None,
            "feature_names": list(self.train_data.feature_names),
        })

    def _describe_reply(self, msg: Message) -> Message:
        return msg.reply("describe", meta={
            "n_train": self._released_rows[msg.run_id],
            "n_test": len(self.test_data),
            "feature_names": list(self.train_data.feature_names),
        })

    def stats(self, msg: Message) -> Message:
        X = self.train_data.X
        if "dp1" in msg.meta:  # one DP1 release per run, like the count: a repeat gets the same noise, uncharged
            if msg.run_id not in self._released_stats:
                self.policy.admit_stats(self.name, msg.meta)  # refuses DP1 noise under the party's minimum
                self._dp_runs.add(msg.run_id)
                self._released_stats[msg.run_id] = dp1_moments(X, msg.meta["dp1"])
            total, sums, sums_sq = self._released_stats[msg.run_id]
            return msg.reply("stats", arrays={"sum": sums.copy(), "sum_sq": sums_sq.copy()},
                             meta={"n": total, "dp1": True})
        self.policy.admit_stats(self.name, msg.meta, dp_run=self._under_dp(msg.run_id))  # exact: refused under DP
        return msg.reply("stats", arrays={"sum": X.sum(axis=0), "sum_sq": np.einsum("ij,ij->j", X, X)},
                         meta={"n": len(X)})

    def _public_rows(self, msg: Message) -> int | None:
        """The row count a request under DP may depend on: this party's own released count for the run, else the
        request's `public_rows` (a value the coordinator chose: q and steps from it reveal nothing of n); never
        the exact n. A DP-SGD request with neither is refused by the policy (q = batch/n would depend on n)."""
        if msg.run_id in self._released_rows:
            return self._released_rows[msg.run_id]
        public = msg.meta.get("public_rows")
        if public is None:  # the policy refuses DP-SGD without it (after checking the noise)
            return None
        if isinstance(public, bool) or not isinstance(public, int) or public < 1:
            raise PolicyRefused(f"party {self.name!r} refuses public_rows={public!r}: not a positive row count")
        return public

    def fit(self, msg: Message) -> Message:
        private = _private(msg.meta) or self._under_dp(msg.run_id)
        if private and msg.run_id in self._evaluated:
            raise PolicyRefused(f"party {self.name!r} refuses 'fit' in run {msg.run_id!r} after its evaluation: under "
                                "DP the run's one evaluation is on the released model, after the last round")
        public_rows = self._public_rows(msg) if private else None
        request = {**msg.meta, "public_rows": public_rows} if public_rows is not None else dict(msg.meta)
        attempt = str((msg.meta.get("secagg") or {}).get("label") or "")
        # the party's own policy first: minimum noise, required levels, its own budget (charged write-ahead)
        levels = frozenset(k for k in ("dp2", "dp3") if k in msg.meta)
        first = self._dp_fit.get(msg.run_id)
        if first is not None and levels != first:  # DP training cannot be switched off (or changed) half-way
            raise PolicyRefused(f"party {self.name!r} refuses 'fit' with DP {sorted(levels)} in run {msg.run_id!r}: "
                                f"its earlier rounds of the run were trained under {sorted(first)}")
        self.policy.admit_fit(self.name, request, len(self.train_data), step=msg.step, attempt=attempt)
        if private:
            self._dp_runs.add(msg.run_id)
        if levels:
            self._dp_fit.setdefault(msg.run_id, levels)
        model = self._model(msg.meta["model"])
        cfg = TrainConfig(**msg.meta["train"])
        X = self._scaled.get("train", self.train_data.X, msg.arrays)
        y = self.train_data.y
        assert y is not None
        global_params = msg.arrays["params"]
        anchor = global_params if cfg.proximal_mu else None
        meta: dict[str, Any] = {"n": len(X)}
        if "dp2" in msg.meta:  # DP-SGD: sampling and noise from the OS CSPRNG, never from the run seed
            dp2 = {**msg.meta["dp2"], "public_rows": public_rows}
            dp = dp_sgd_train(model, global_params, X, y, cfg, DPSGDConfig(**dp2), anchor=anchor)
            result = dp.result
            meta["dp2"] = {"steps": dp.steps, "sampling_rate": dp.sampling_rate,
                           "noise_multiplier": dp.noise_multiplier, "clipped_fraction": dp.clipped_fraction}
        else:
            result = train(model, global_params, X, y, cfg, np.random.default_rng(int(msg.meta["seed"])),
                           anchor=anchor)
        update = result.params - global_params
        if "dp3" in msg.meta:  # clip (and in distributed mode noise) before anything leaves the party
            update, meta["dp3_indicator"] = party_release(update, msg.meta["dp3"])
        meta["loss"] = result.mean_loss
        if private:  # only outputs of charged mechanisms leave the party (finding 1): no n, no loss, and no
            # DP-SGD diagnostics (steps and rate are the party's to compute, the clipped fraction is exact)
            meta = {k: v for k, v in meta.items() if k not in ("n", "loss", "dp2")}
            if "dp3" in msg.meta and not msg.meta["dp3"].get("count_sigma"):  # no adaptive clipping: the
                meta.pop("dp3_indicator", None)  # indicator is unused, and an exact bit would be uncharged
        if "secagg" in msg.meta:
            return self._masked_fit(msg, update, meta, result.mean_loss, len(X), private, public_rows)
        return msg.reply("fit_result", arrays={"update": update}, meta=meta)

    def _masked_fit(self, msg: Message, update: np.ndarray, meta: Mapping[str, Any], loss: float,
                    rows: int, private: bool, public: int | None) -> Message:
        """Secure aggregation: one masked vector, nothing else (no loss, no DP2 diagnostics in clear).

        Under `[privacy]` the loss slot is 0 and the weight is public (released row count over the
        coordinator's total), so the sum carries nothing that was not charged."""
        sa = msg.meta["secagg"]
        if private:  # no released count (DP3 alone needs none): weight 0, the DP3 mean is unweighted
            weight, loss = (float(public) / float(sa["total_rows"]) if public is not None else 0.0), 0.0
        else:
            weight = float(rows) / float(sa["total_rows"])
        if "dp3" in msg.meta:  # DP3 mean is unweighted; the indicator feeds adaptive clipping
            head, indicator = update, float(meta.get("dp3_indicator", 0.0))
        else:  # FedAvg: sum of n_i/N-weighted updates and of the weights
            head, indicator = update * weight, 0.0
        vector = np.concatenate([head, [indicator, weight * float(loss), weight]])
        dp3 = msg.meta.get("dp3") or {}
        # the noise shares its update carries (distributed DP3): unmasking then needs that many signed contributors
        shares = int(dp3.get("noise_parties") or dp3["parties"]) if dp3.get("mode") == "distributed" else None
        # the lock content: what the vector holds before the public n/N weighting (a coordinator that changes
        # total_rows rescales every input exactly; it must not get a second unmasking of the same updates)
        content = np.concatenate([update, [indicator, float(loss), float(rows)]]).astype(np.float64).tobytes()
        masked = self.secagg.respond_masked(msg.arrays, sa, vector, run_id=msg.run_id,
                                            basis=_basis("fit", msg), noise_parties=shares, content=content)
        return msg.reply("fit_result", arrays={"masked": masked}, meta={"secagg": sa["label"]})

    def secagg_keys(self, msg: Message) -> Message:
        return msg.reply("secagg_keys", arrays=self.secagg.respond(msg.kind, msg.arrays, msg.meta, run_id=msg.run_id))

    def secagg_share(self, msg: Message) -> Message:
        return msg.reply("secagg_shares", arrays=self.secagg.respond(msg.kind, msg.arrays, msg.meta, run_id=msg.run_id))

    def secagg_consistency(self, msg: Message) -> Message:
        return msg.reply("secagg_consistency",
                         arrays=self.secagg.respond(msg.kind, msg.arrays, msg.meta, run_id=msg.run_id))

    def secagg_unmask(self, msg: Message) -> Message:
        return msg.reply("secagg_unmask", arrays=self.secagg.respond(msg.kind, msg.arrays, msg.meta, run_id=msg.run_id))

    def _admit_evaluate(self, msg: Message) -> None:
        """Every run that evaluates the party's holdout counts against `max_evaluations` (review R11-5: with or
        without DP, each evaluation is an exact release about the same holdout rows). Under DP a party also
        evaluates ONE model per run (the released one, after the last round): holdout rows are outside the DP
        unit, so a coordinator must not probe them with crafted models. Repeats of the same request (transport
        or SecAgg retries, same model and scaler) are answered; another model is refused. The party cannot check
        that the model IS the released one (it never receives the aggregate otherwise): it bounds the coordinator
        to one probe per run. Without DP a run evaluates a model per request (one per round, in honest runs):
        the cap then bounds the runs, not the models probed inside one."""
        dp = self._under_dp(msg.run_id)
        digest = _basis("evaluate", msg)
        if self._evaluated_path is not None and msg.run_id not in self._evaluated:  # re-read: another instance
            self._evaluated = {**self._load_evaluated(), **self._evaluated}  # of this party may have answered
        first = self._evaluated.get(msg.run_id)
        if first is None and self.max_evaluations is not None and len(self._evaluated) >= self.max_evaluations:
            raise PolicyRefused(f"party {self.name!r} refuses an evaluation in run {msg.run_id!r}: it evaluated "
                                f"models in {len(self._evaluated)} runs (with or without DP), its maximum "
                                "(max_evaluations): each is an exact release about its holdout rows, which are "
                                "outside the DP unit")
        if first is None:
            first = self._evaluated[msg.run_id] = digest
            if self._evaluated_path is not None:  # written before the evaluation leaves
                private_directory(self._evaluated_path.parent)
                atomic_write_bytes(self._evaluated_path, json.dumps(self._evaluated, sort_keys=True).encode(),
                                   mode=PRIVATE_FILE)
        if dp and first != digest:
            raise PolicyRefused(f"party {self.name!r} refuses a second evaluation in run {msg.run_id!r}: under DP it "
                                "evaluates one model per run (the released one); this request names another model")

    def _load_evaluated(self) -> dict[str, str]:
        if self._evaluated_path is None or not self._evaluated_path.exists():
            return {}
        try:
            data = json.loads(self._evaluated_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"party {self.name!r}: its record of evaluated models '{self._evaluated_path}' is "
                             f"unreadable ({exc}); refusing to start (restore it: it bounds evaluations under "
                             "DP)") from None
        return {str(k): str(v) for k, v in data.items()}

    def _bins(self, msg: Message, dp: bool) -> int:
        """The score bins of an evaluation: at most `MAX_BINS`, and exactly `DP_BINS` under DP (a coordinator that
        picks the model and a fine binning reads each holdout row's score, i.e. a feature, and its label). Under
        secure aggregation exactly the default (`DP_BINS` under DP, else `DEFAULT_BINS`): a 2k-bin histogram
        merges into the k-bin one, so two binnings of one model over U minus v and over U would give v's
        histogram (review R11-2; the model lock in `sampan.privacy.secagg` refuses that too)."""
        default = DP_BINS if dp else DEFAULT_BINS
        bins = msg.meta.get("bins", default)
        limit = DP_BINS if dp else MAX_BINS
        fixed = dp or "secagg" in msg.meta
        if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= limit or (fixed and bins != default):
            raise PolicyRefused(f"party {self.name!r} refuses bins={bins!r}: it bins evaluation scores into at most "
                                f"{MAX_BINS} bins, into exactly {DP_BINS} under DP, and into exactly {default} under "
                                "secure aggregation")
        return bins

    def evaluate(self, msg: Message) -> Message:
        dp = self._under_dp(msg.run_id)
        bins = self._bins(msg, dp)
        if dp and not len(self.test_data):  # the training rows are the DP unit: never evaluated exactly
            raise PolicyRefused(f"party {self.name!r} refuses 'evaluate' under DP without a holdout: it would score "
                                "its training rows exactly")
        self._admit_evaluate(msg)
        model = self._model(msg.meta["model"])
        part = "test" if len(self.test_data) else "train"
        data = self.test_data if part == "test" else self.train_data
        X, y = self._scaled.get(part, data.X, msg.arrays), data.y
        assert y is not None
        p = model.predict_proba(msg.arrays["params"], X)
        histogram = ScoreHistogram.from_scores(y, p, bins)
        if dp:  # every field a function of the per-bin label counts: no score beyond its bin leaves (review R8-2)
            histogram = histogram.centred()
            mid = np.clip((histogram.edges[:-1] + histogram.edges[1:]) / 2, 1e-12, 1 - 1e-12)
            loss_sum = float(-(histogram.pos @ np.log(mid) + histogram.neg @ np.log(1 - mid)))
            brier_sum = float(histogram.pos @ (1 - mid) ** 2 + histogram.neg @ mid ** 2)
        else:
            p_clip = np.clip(p, 1e-12, 1 - 1e-12)
            loss_sum = float(-np.sum(y * np.log(p_clip) + (1 - y) * np.log(1 - p_clip)))
            brier_sum = float(np.sum((p - y) ** 2))
        if "secagg" in msg.meta:  # one masked vector: the coordinator sees only the sum over parties
            vector = evaluation_vector(histogram, loss_sum, brier_sum, len(y))
            masked = self.secagg.respond_masked(msg.arrays, msg.meta["secagg"], vector, run_id=msg.run_id,
                                                basis=_basis("evaluate", msg))
            return msg.reply("evaluation", arrays={"masked": masked}, meta={"secagg": msg.meta["secagg"]["label"]})
        local: dict[str, float | None] = {}
        if 0 < y.sum() < len(y) and not dp:  # under DP no local metrics (exact functions of every score)
            local = {k: (None if not np.isfinite(v) else float(v)) for k, v in binary_metrics(y, p).items()}
        return msg.reply("evaluation", arrays=histogram.to_arrays(), meta={
            "n": len(y),
            "loss_sum": loss_sum,
            "brier_sum": brier_sum,
            "metrics": local,
        })


def _basis(kind: str, msg: Message) -> str:
    """Digest of the public inputs a masked vector is computed from (global model, scaler, model config):
    SecAgg binds every attempt on one model to one survivor set (`SecAggClient.masked_input`), and under DP a
    party evaluates one model per run. Canonical, so that a request that computes the same thing digests
    alike (review R7-2): the model config as `model_from_config` rebuilds it, arrays as float64 with -0.0
    read as 0.0, and an identity scaler (mean 0, scale 1: X unchanged) the same as none."""
    config = msg.meta.get("model")
    try:
        config = model_from_config(config).config()
    except (TypeError, ValueError, KeyError, AttributeError):
        pass  # the handler refuses it with a clear error; the digest only needs to be deterministic
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    arrays = {name: np.ascontiguousarray(np.asarray(msg.arrays[name], dtype=np.float64) + 0.0)
              for name in ("params", "mean", "scale") if name in msg.arrays}
    if "mean" in arrays and "scale" in arrays and not np.any(arrays["mean"]) and np.all(arrays["scale"] == 1.0):
        del arrays["mean"], arrays["scale"]
    for name, array in arrays.items():
        digest.update(f"|{name}|{array.shape}|".encode() + array.tobytes())
    return f"{kind}/{digest.hexdigest()}"


def _private(meta: Mapping[str, Any]) -> bool:
    """A request made under `[privacy]` (any level): the coordinator sends the released row count."""
    return "public_rows" in meta or "dp2" in meta or "dp3" in meta


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
