"""Catalogue of the horizontal protocol's messages: every field, and what protects it in a given setup.

Horizontal GBDT (`model.kind = "gbdt"`: `hgb.*` kinds) has its own catalogue, `sampan.wire.gbdt_catalogue`.

The privacy receipt prints this catalogue for a run's configuration, and the neighbouring-dataset
tests hold the protocol to it: when one training row is added, every field that changes must be
declared here as the output of a charged mechanism (or computed only from such outputs and public
values), as secure-aggregation material, or as visible to a named role. A field that is not listed
is a bug: a new field must be declared before it may travel.

Field names are `arrays.<key>` and `meta.<key>` (nested meta as `meta.a.b`); `sum.<slot>` names the
slots of a secure-aggregation sum, which is all the coordinator learns of a masked vector. A name
ending in `.*` covers every key below it.

Ledger tags name the mechanisms the coordinator's ledger charges: `DP1:count` (each party's training
row count, once at setup), `DP1:stats` (standardisation moments), `DP1:impute` (imputation statistics,
once at setup), `DP1:groups` (per-group holdout histograms, once after the final evaluation), `DP2`
(DP-SGD), `DP3` (clipped updates in a noised sum).

Holdout rows are outside the DP unit: the unit is one training row of one party. Under `[privacy]`
the model is evaluated once, at the end, on the released model; that evaluation is computed from
charged outputs and holdout rows only, and is declared as such. Each party enforces it (one model
evaluated per run, no training after it); a deployed party fixes its own holdout split.

Under DP a party's `fit_result` carries the update (and, with adaptive DP3, the indicator) and nothing
else: no row count, loss, clipped share, or DP-SGD steps/rate (the party computes those from its own
released count, never from its exact n). Central DP3 shows each clipped update to the coordinator; a
deployed party accepts it only with `trust_coordinator_for_central_dp3`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Protection = Literal["public", "charged", "derived", "random", "aggregate", "visible"]

# What each protection means, in the receipt's words.
PROTECTIONS: dict[str, str] = {
    "public": "public: the same for any data (configuration, names, constants)",
    "charged": "output of a DP mechanism the ledger charges",
    "derived": "computed only from charged outputs, public values (and, for evaluation, holdout rows outside "
               "the DP unit): post-processing, no further charge",
    "random": "cryptographic material (keys, commitments, sealed shares, masked vectors): independent of the "
              "data to its reader",
    "aggregate": "secure-aggregation sum without DP: the coordinator learns the exact sum over the contributors",
    "visible": "visible in clear to the named role, which must be trusted with it (no DP on this field)",
}


@dataclass(frozen=True)
class Field:
    name: str
    protection: Protection
    mechanisms: tuple[str, ...] = ()   # ledger tags (charged / derived)
    role: str | None = None            # who sees it in clear ("visible") or learns the sum ("aggregate")
    what: str = ""

    def describe(self) -> str:
        base = {"charged": "charged: " + ", ".join(self.mechanisms),
                "derived": "derived from " + (", ".join(self.mechanisms) or "public values"),
                "visible": f"visible to the {self.role} (trusted; no DP on this field)",
                "aggregate": f"SecAgg sum only, no DP (the {self.role} learns the exact sum; without DP, sums of "
                             "rounds on models it perturbed can be differenced to approximate one party's value)",
                "random": "random to its reader (secure-aggregation material)",
                "public": "public"}[self.protection]
        return f"{self.what}: {base}" if self.what else base


@dataclass(frozen=True)
class MessageSpec:
    kind: str
    sender: str      # "party" or "coordinator"
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        """The declared field that covers `name` (exact, or a `prefix.*` entry)."""
        for f in self.fields:
            if f.name == name or (f.name.endswith(".*") and name.startswith(f.name[:-1])):
                return f
        return None


@dataclass(frozen=True)
class Setup:
    """The privacy-relevant shape of a run: which mechanisms are on, and secure aggregation."""

    dp1: bool = False
    dp2: bool = False
    dp3: str | None = None          # None, "central" or "distributed"
    adaptive: bool = False          # DP3 adaptive clipping (the indicator travels)
    secagg: bool = False
    standardize: bool = True
    bank_alone: bool = False        # [bank_alone]: each bank's local-only vs consortium histograms (per bank)
    impute: bool = False            # [schema] imputes missing values (median/mean/indicator): `impute_stats`
    groups: bool = False            # [evaluation] groups: per-group holdout histograms (`group_evaluation`)

    @property
    def private(self) -> bool:
        return self.dp1 or self.dp2 or self.dp3 is not None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Setup:
        """From a run's stored JSON config (`RunConfig.to_dict()`)."""
        privacy = config.get("privacy") or {}
        secagg = config.get("secure_aggregation")
        dp3 = privacy.get("dp3")
        return cls(dp1=bool(privacy.get("dp1")), dp2=bool(privacy.get("dp2")),
                   dp3=(dp3.get("mode", "central") if dp3 else None), adaptive=bool(dp3 and dp3.get("adaptive")),
                   secagg=bool(secagg and secagg.get("enabled", True)),
                   standardize=bool((config.get("data") or {}).get("standardize", True)),
                   bank_alone=config.get("bank_alone") is not None, impute=_imputes(config.get("schema") or {}),
                   groups=bool((config.get("evaluation") or {}).get("groups")))


def _imputes(schema: Mapping[str, Any]) -> bool:
    """The stored [schema] imputes some column from federated statistics."""
    fill = ("median", "mean", "indicator")
    return schema.get("impute") in fill or any(isinstance(f, Mapping) and f.get("impute") in fill
                                               and f.get("kind") != "category" for f in schema.get("features") or ())


LABEL = Field("meta.label", "random", what="attempt label (run id and nonce: independent of the data)")


def _model_protection(s: Setup) -> tuple[Protection, tuple[str, ...]]:
    """What protects the global model (and so everything computed from it)."""
    mechs = tuple(m for m, on in (("DP2", s.dp2), ("DP3", s.dp3 is not None)) if on)
    if not mechs:
        return "visible", ()
    return "derived", (*mechs, *(("DP1:count",) if s.private else ()), *(("DP1:stats",) if s.dp1 else ()))


def _clear(name: str, what: str, role: str = "coordinator") -> Field:
    return Field(name, "visible", role=role, what=what)


def horizontal_catalogue(s: Setup) -> dict[str, MessageSpec]:
    """Every message of a horizontal run in this setup, keyed by `<sender>:<kind>` (plus `:sum` entries)."""
    count = ("DP1:count",)
    model_prot, model_mechs = _model_protection(s)
    specs: list[MessageSpec] = []

    # --- party -> coordinator -------------------------------------------------------------------------
    describe = [Field("meta.feature_names", "public", what="feature names")]
    if s.private:
        describe += [Field("meta.n_train", "charged", count, what="training row count (Gaussian, sensitivity 1)"),
                     _clear("meta.n_test", "holdout row count (holdout rows are outside the DP unit)")]
    else:
        describe += [_clear("meta.n_train", "training row count"), _clear("meta.n_test", "holdout row count"),
                     _clear("meta.positive_rate", "training positive rate")]
    specs.append(MessageSpec("describe", "party", tuple(describe)))

    if s.dp1:
        stats = [Field(f, "charged", ("DP1:stats",), what=w) for f, w in (
            ("arrays.sum", "sums of clipped, centred features"), ("arrays.sum_sq", "sums of their squares"),
            ("meta.n", "row count"))] + [Field("meta.dp1", "public", what="marker")]
    else:
        stats = [_clear("arrays.sum", "feature sums"), _clear("arrays.sum_sq", "sums of squares"),
                 _clear("meta.n", "row count")]
    specs.append(MessageSpec("stats", "party", tuple(stats)))

    if s.dp2:
        update = Field("arrays.update", "charged", ("DP2", *count), what="DP-SGD model delta")
    elif s.dp3 == "central":
        update = _clear("arrays.update", "clipped model delta (central DP3: the coordinator adds the noise)")
    else:
        update = _clear("arrays.update", "model delta")
    indicator = (Field("meta.dp3_indicator", "charged", ("DP2", *count), what="DP3 clip indicator")
                 if s.dp2 else _clear("meta.dp3_indicator", "DP3 clip indicator (adaptive clipping)"))
    if s.secagg:
        specs.append(MessageSpec("fit_result", "party", (
            Field("arrays.masked", "random", what="masked [update, indicator, weighted loss, weight] (and, on "
                  "evaluated rounds without DP, the evaluation of the round's incoming model: see 'evaluation')"),
            Field("meta.secagg", "random", what="attempt label (a run nonce)"))))
        dp3_mechs = ("DP3", *(("DP2",) if s.dp2 else ()), *count)
        if s.dp3 is not None:
            sum_update = Field("sum.update", "charged", dp3_mechs, what="sum of clipped, noise-shared deltas")
        elif s.dp2:
            sum_update = Field("sum.update", "charged", ("DP2", *count), what="sum of weighted DP-SGD deltas")
        else:
            sum_update = Field("sum.update", "aggregate", role="coordinator", what="sum of weighted deltas")
        sums = [sum_update]
        if s.dp3 is not None and s.adaptive:
            sums.append(Field("sum.indicator", "charged", dp3_mechs, what="noised count of unclipped updates"))
        else:
            sums.append(Field("sum.indicator", "public", what="0 (no adaptive clipping)"))
        if s.private:
            sums += [Field("sum.loss", "public", what="0: no loss is released under DP"),
                     Field("sum.weight", "derived", count, what="sum of released-count weights")]
        else:
            sums += [Field("sum.loss", "aggregate", role="coordinator", what="sum of weighted mean losses"),
                     Field("sum.weight", "aggregate", role="coordinator", what="sum of weights n/N")]
        specs.append(MessageSpec("fit_result:sum", "party", tuple(sums)))
    else:
        fit = [update]
        if s.dp3 is not None and s.adaptive:
            fit.append(indicator)
        if not s.private:
            fit += [_clear("meta.n", "training row count"), _clear("meta.loss", "mean local training loss")]
        specs.append(MessageSpec("fit_result", "party", tuple(fit)))

    holdout = ("holdout rows (outside the DP unit) scored by the released model: exact label counts in 100 score "
               "bins (sums at bin midpoints): the holdout's composition, not the training count, and each holdout "
               "row's label and any coordinator-chosen function of the row, to 100 levels, per evaluation"
               if s.private else "holdout rows")
    eval_fields = ("pos", "neg", "sum_p", "loss_sum", "brier_sum", "n")
    if s.secagg:
        specs.append(MessageSpec("evaluation", "party", (
            Field("arrays.masked", "random", what="masked [score histogram by label, loss, Brier, n]"),
            Field("meta.secagg", "random", what="attempt label (a run nonce)"))))
        if model_prot == "derived":
            sums = [Field(f"sum.{k}", "derived", model_mechs, what=holdout) for k in eval_fields]
        else:
            sums = [Field(f"sum.{k}", "aggregate", role="coordinator", what=holdout) for k in eval_fields]
        specs.append(MessageSpec("evaluation:sum", "party", tuple(sums)))
    else:
        names = ["arrays.pos", "arrays.neg", "arrays.sum_p", "meta.n", "meta.loss_sum", "meta.brier_sum"]
        names += [] if s.private else ["meta.metrics.*"]
        ev = [Field(n, "derived", model_mechs, what=holdout) if model_prot == "derived" else _clear(n, holdout)
              for n in names]
        if s.private:  # review R8-2: 100 bins; sums and local metrics are functions of the counts (or absent)
            ev.append(Field("meta.metrics", "public", what="{}: no local metrics under DP"))
        specs.append(MessageSpec("evaluation", "party", (Field("arrays.edges", "public", what="bin edges"), *ev)))

    specs += [
        MessageSpec("secagg_keys", "party", (Field("arrays.*", "random", what=(
            "X25519 public keys, a hash commitment to the self-mask seed, their signature and certificate")),)),
        MessageSpec("secagg_shares", "party", (
            Field("arrays.*", "random", what="Shamir shares sealed for each neighbour"),)),
        MessageSpec("secagg_consistency", "party", (
            Field("arrays.*", "random", what="signature over the survivor set"),)),
        MessageSpec("secagg_unmask", "party", (
            Field("arrays.*", "random", what="shares of survivors' self-mask seeds and of dropouts' mask keys"),)),
        MessageSpec("error", "party", (_clear("meta.*", "error type and message (never a record value)"),)),
    ]

    # --- coordinator -> party (what each party sees) ---------------------------------------------------
    if s.dp1:
        scaler = tuple(Field(f"arrays.{k}", "derived", ("DP1:stats",), what="standardisation")
                       for k in ("mean", "scale"))
    else:
        scaler = tuple(Field(f"arrays.{k}", "visible", role="every party", what="pooled exact moments")
                       for k in ("mean", "scale"))
    fill_what = "imputation fill values (pooled median/mean per imputed column)"
    fill = (Field("arrays.impute", "derived", ("DP1:impute",), what=fill_what) if s.private
            else Field("arrays.impute", "visible", role="every party", what=fill_what + " from exact statistics"))
    scaler = (*scaler, fill)
    params = (Field("arrays.params", model_prot, model_mechs, what="global model")
              if model_prot == "derived" else Field("arrays.params", "visible", role="every party",
                                                    what="global model (no DP)"))
    dp3_settings = Field("meta.dp3.*", "derived", ("DP3",) if s.adaptive else (), what="DP3 settings (clip adapts)")
    request_secagg = tuple(Field(f"arrays.{k}", "random", what="secure-aggregation keys, signatures, shares relayed")
                           for k in ("own.*", "peer.*", "signers.*", "c_pk", "s_pk", "envelopes"))
    secagg_label = Field("meta.secagg.label", "random", what="attempt label (a run nonce)")
    secagg_meta = (Field("meta.secagg.*", "derived", count, what="secure-aggregation step (peers, total released rows)")
                   if s.private else Field("meta.secagg.*", "visible", role="every party",
                                           what="secure-aggregation step (peers, total of the exact row counts)"))
    specs += [
        MessageSpec("describe", "coordinator", (Field("meta.dp_count.*", "public", what="count noise"),)),
        MessageSpec("stats", "coordinator", (Field("meta.dp1.*", "derived", count if s.private else (),
                                                   what="DP1 noise and public bounds ('auto' noise is calibrated "
                                                   "from the released row counts)"), fill)),
        MessageSpec("fit", "coordinator", (
            params, *scaler, *request_secagg, Field("meta.model.*", "public"), Field("meta.train.*", "public"),
            Field("meta.seed", "public"),
            Field("meta.dp2.*", "derived", count if s.private else (),
                  what="DP-SGD settings ('auto' noise is calibrated from the party's released row count)"),
            dp3_settings,
            Field("meta.public_rows", "charged", count, what="the party's own released row count"), secagg_label,
            secagg_meta, Field("meta.evaluate.*", "public", what="bins of the evaluation a secure fit carries"))),
        MessageSpec("evaluate", "coordinator", (params, *scaler, *request_secagg, Field("meta.model.*", "public"),
                                                Field("meta.bins", "public"), secagg_label, secagg_meta)),
        *(MessageSpec(k, "coordinator", (Field("arrays.*", "random", what="keys, signatures, shares relayed"),
                                         LABEL, Field("meta.*", "public", what="secure-aggregation step (peers)")))
          for k in ("secagg_keys", "secagg_share", "secagg_consistency", "secagg_unmask")),
    ]
    if s.bank_alone:
        specs += _bank_alone_specs(s, params, scaler)
    if s.impute:
        specs += _imputation_specs(s)
    if s.groups:
        specs += _group_specs(s, params, scaler)
    return {f"{spec.sender}:{spec.kind}": spec for spec in specs}


def _bank_alone_specs(s: Setup, params: Field, scaler: tuple[Field, ...]) -> list[MessageSpec]:
    """Each bank alone vs the consortium (`sampan.horizontal.local_comparison`): per bank by nature, so never
    under secure aggregation; under DP the local-only model is DP-SGD (DP2, charged to both ledgers)."""
    model_prot, model_mechs = _model_protection(s)
    per_bank = ("each bank's own holdout (outside the DP unit), label counts in at most 100 score bins (score sums "
                "at bin midpoints: a function of the counts); per bank by nature: secure aggregation cannot apply")
    if s.private:
        local = Field("arrays.local.*", "derived", ("DP2", "DP1:count"),
                      what="local-only DP-SGD model scored on " + per_bank)
    else:
        local = _clear("arrays.local.*", "local-only model (the bank's own training rows) scored on " + per_bank)
    scored = "consortium model scored on " + per_bank
    consortium = (Field("arrays.consortium.*", "derived", model_mechs, what=scored) if model_prot == "derived"
                  else _clear("arrays.consortium.*", scored))
    return [
        MessageSpec("bank_alone_result", "party", (local, consortium, _clear("meta.n", "holdout row count"))),
        MessageSpec("bank_alone", "coordinator", (
            params, *scaler, Field("meta.model.*", "public"), Field("meta.train.*", "public"),
            Field("meta.seed", "public"), Field("meta.bins", "public"),
            Field("meta.dp2.*", "public", what="DP-SGD settings of the local-only model"),
            Field("meta.public_rows", "charged", ("DP1:count",), what="the party's own released row count"))),
    ]


def _group_specs(s: Setup, params: Field, scaler: tuple[Field, ...]) -> list[MessageSpec]:
    """`evaluate_groups` (`sampan.horizontal.group_evaluation`): per group level and score bin, label counts of
    each party's holdout; under DP one Gaussian release per run (`sampan.privacy.group_release_mod`), charged
    `DP1:groups`; without DP exact (small levels zeroed and named in ``meta.withheld``)."""
    what = "label counts per declared group level and score bin of its holdout rows (per party, not under SecAgg)"
    if s.private:
        counts = (Field("arrays.pos", "charged", ("DP1:groups",), what=what),
                  Field("arrays.neg", "charged", ("DP1:groups",), what=what), Field("meta.dp", "public"))
    else:
        counts = (_clear("arrays.pos", what), _clear("arrays.neg", what),
                  _clear("meta.withheld", "levels it holds fewer than 10 holdout rows of (zeroed)"))
    return [
        MessageSpec("group_evaluation", "party", counts),
        MessageSpec("evaluate_groups", "coordinator", (
            params, *scaler, Field("meta.model.*", "public"), Field("meta.groups", "public",
                                                                    what="group columns and levels from [schema]"),
            Field("meta.bins", "public"), Field("meta.group_dp.*", "public", what="noise multiplier"))),
    ]


def _imputation_specs(s: Setup) -> list[MessageSpec]:
    """`impute_stats` (`sampan.horizontal.imputation`): per-party statistics of the imputed columns, released per
    party (not under secure aggregation); under DP one Gaussian release per run (`sampan.privacy.imputation`)."""
    stats = ("arrays.count", "count of present cells (mean columns)"), ("arrays.sum", "sum of clipped values"), \
        ("arrays.hist", "histogram over public bins (median columns)")
    if s.private:
        party = [Field(f, "charged", ("DP1:impute",), what=w) for f, w in stats]
        party.append(Field("meta.dp", "public", what="marker"))
    else:
        party = [_clear(f, w) for f, w in stats]
        party += [_clear("arrays.low", "minimum of a median column without bounds"),
                  _clear("arrays.high", "maximum of a median column without bounds")]
    return [MessageSpec("impute_stats", "party", tuple(party)),
            MessageSpec("impute_stats", "coordinator", (
                Field("meta.columns", "public", what="imputed columns, statistic, public bounds and bins") if s.private
                else Field("meta.columns", "visible", role="every party", what="imputed columns, statistic, bins and "
                           "bounds (for a median without public bounds: the pooled exact min and max)"),
                Field("meta.dp.*", "public", what="imputation noise"),
                Field("meta.ranges", "public", what="median columns without bounds (no DP only)")))]


def flatten(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    """A message's fields by catalogue name: `arrays.<key>`, `meta.<key>` (nested dicts dotted)."""
    out: dict[str, Any] = {f"arrays.{k}": v for k, v in arrays.items()}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = value
    for k, v in meta.items():
        walk(f"meta.{k}", v)
    return out


def receipt_rows(s: Setup) -> list[dict[str, str]]:
    """The catalogue as receipt rows: who sends which kind, each field and its protection."""
    rows = []
    for spec in horizontal_catalogue(s).values():
        if not s.secagg and (spec.kind.startswith("secagg_") or spec.kind.endswith(":sum")):
            continue
        if not s.standardize and spec.kind == "stats":
            continue
        for f in spec.fields:
            rows.append({"sender": spec.sender, "kind": spec.kind, "field": f.name, "protection": f.protection,
                         "mechanisms": ", ".join(f.mechanisms), "role": f.role or "", "description": f.describe()})
    return rows
