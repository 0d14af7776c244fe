"""Catalogue of horizontal GBDT's messages (`model.kind = "gbdt"`): every field, and what protects it.

Without DP every field a bank sends is exact and visible to the coordinator: its per-feature quantile cut points,
row and positive counts, and per tree its gradient/hessian histograms of every requested node (the root, then the
smaller child of each split per level; summed in clear, no secure aggregation exists for trees) and one
validation log-loss sum per tree (early stopping). Under `[privacy.gbdt]` a bank sends only outputs of charged
Gaussian mechanisms (`sampan.privacy.gbdt_dp`): [row count, positives] once (ledger tag `DP1:counts`), and per
tree at most max_depth + 1 histogram releases (`DP1:hist`: the root's histograms; per level the histograms of
every child, one release since a level's nodes hold disjoint rows; the last level node totals only); no quantiles
(edges from public bounds) and no validation loss. The final evaluation is the horizontal `evaluation` (holdout
rows, outside the DP unit; exactly 100 bins under DP).
"""

from __future__ import annotations

from sampan.wire.catalogue import PROTECTIONS, Field, MessageSpec, Protection

__all__ = ["GBDT_THREAT_MODEL", "gbdt_catalogue", "gbdt_protections", "gbdt_receipt_rows", "gbdt_reveals"]

COUNTS, HIST = ("DP1:counts",), ("DP1:hist",)


def _clear(name: str, what: str, role: str = "coordinator") -> Field:
    return Field(name, "visible", role=role, what=what)


def gbdt_catalogue(dp: bool) -> dict[str, MessageSpec]:
    """Every message of a horizontal GBDT run, keyed by `<sender>:<kind>`."""
    sketch: tuple[Field, ...]
    hist: tuple[Field, ...]
    leaves: tuple[Field, ...]
    describe: tuple[Field, ...]
    model: tuple[Protection, tuple[str, ...]]
    if dp:
        sketch = (Field("meta.n", "charged", COUNTS, what="training row count (Gaussian, with positives: "
                        "sensitivity sqrt 2)"), Field("meta.events", "charged", COUNTS, what="positives"),
                  Field("meta.dp", "public", what="marker"))
        hist = (Field("arrays.*", "charged", HIST, what="per node gradient G:<node> and hessian H:<node> sums per bin "
                      "(node totals at the last level), clipped, noised at the bank"),
                Field("meta.dp", "public", what="marker"))
        leaves = (Field("meta.n_val", "public", what="0: no validation loss under DP"),
                  Field("meta.val_loss", "public", what="0"))
        model = ("derived", HIST + COUNTS)
    else:
        sketch = (_clear("arrays.quantiles", "per-feature quantile cut points of its training rows"),
                  _clear("meta.n", "training row count"), _clear("meta.events", "positives"))
        hist = (_clear("arrays.*", "per node gradient and hessian sums per bin, exact"),)
        leaves = (_clear("meta.n_val", "validation row count"),
                  _clear("meta.val_loss", "validation log-loss sum (early stopping)"))
        model = ("visible", ())
    tree_fields = (Field("arrays.*", model[0], model[1], role="every party", what="splits, leaf values, bin edges"),)
    holdout = "holdout rows (outside the DP unit) scored by the released model" if dp else "holdout rows"
    evaluation = tuple(Field(f"{n}", "derived" if dp else "visible", model[1], role=None if dp else "coordinator",
                             what=holdout)
                       for n in ("arrays.pos", "arrays.neg", "arrays.sum_p", "meta.n", "meta.loss_sum",
                                 "meta.brier_sum", *(() if dp else ("meta.metrics.*",))))
    if dp:  # review R8-2: 100 bins, sums at bin midpoints, no local metrics
        evaluation += (Field("meta.metrics", "public", what="{}: no local metrics under DP"),)
    names = Field("meta.feature_names", "public", what="feature names")
    if dp:
        describe = (names, Field("meta.n_train", "charged", ("DP1:count",), what="training row count (Gaussian, "
                                 "sensitivity 1; not used by the trees)"),
                    _clear("meta.n_test", "holdout row count (holdout rows are outside the DP unit)"))
    else:
        describe = (names, _clear("meta.n_train", "training row count"), _clear("meta.n_test", "holdout row count"),
                    _clear("meta.positive_rate", "training positive rate"))
    specs = [
        MessageSpec("describe", "party", describe),
        MessageSpec("describe", "coordinator", (Field("meta.dp_count.*", "public", what="count noise"),)),
        MessageSpec("hgb.sketch", "party", sketch),
        MessageSpec("hgb.ack", "party", ()),
        MessageSpec("hgb.hist", "party", hist),
        MessageSpec("hgb.leaves", "party", leaves),
        MessageSpec("evaluation", "party", (Field("arrays.edges", "public", what="bin edges"), *evaluation)),
        MessageSpec("error", "party", (_clear("meta.*", "error type and message (never a record value)"),)),
        MessageSpec("hgb.sketch", "coordinator", (Field("meta.*", "public", what="bins, count noise"),)),
        MessageSpec("hgb.setup", "coordinator", (Field("arrays.*", "public" if dp else "visible", (),
                                                       role="every party", what="bin edges"),
                                                 Field("meta.base_score", "derived" if dp else "visible", COUNTS,
                                                       role="every party", what="log-odds of the positive rate"),
                                                 Field("meta.pos_weight", "public", what="class weight of positives"))),
        MessageSpec("hgb.hist", "coordinator", (
            Field("arrays.nodes", model[0], model[1], role="every party", what="node ids (from the tree grown so far)"),
            Field("meta.*", model[0], model[1], role="every party", what="new tree, noise, clip, totals"))),
        MessageSpec("hgb.split", "coordinator", tree_fields),
        MessageSpec("hgb.leaves", "coordinator", tree_fields),
        MessageSpec("evaluate", "coordinator", (*tree_fields, Field("meta.model.*", model[0], model[1],
                                                                    role="every party", what="the trees"))),
    ]
    return {f"{spec.sender}:{spec.kind}": spec for spec in specs}


def gbdt_receipt_rows(dp: bool) -> list[dict[str, str]]:
    """The catalogue as receipt rows (as `sampan.wire.catalogue.receipt_rows`)."""
    return [{"sender": spec.sender, "kind": spec.kind, "field": f.name, "protection": f.protection,
             "mechanisms": ", ".join(f.mechanisms), "role": f.role or "", "description": f.describe()}
            for spec in gbdt_catalogue(dp).values() for f in spec.fields]


def gbdt_reveals(dp: bool, n_trees: int, max_depth: int) -> dict[str, str]:
    """What each step reveals, per tree level (the receipt's `reveals`)."""
    if not dp:
        return {
            "setup": "each bank's per-feature quantile cut points (order statistics of its columns: at most the "
                     "job's n_bins - 1 per feature, from at least 10 present values per cut point), row count and "
                     "positive count, exact, to the coordinator",
            "per tree level": "each bank's exact gradient and hessian sums per bin of every requested node (the "
                              "root, then the smaller child of each split), to the coordinator; no secure "
                              "aggregation (horizontal GBDT sums histograms in the clear). The coordinator chooses "
                              "the splits that route the rows, so it can isolate a few rows in a node: these exact "
                              "per-node histograms can then reveal individual records (each feature's bin and the "
                              "gradient, hence the label, of a row alone in a node)",
            "per tree": "each bank's validation log-loss sum (early stopping), to the coordinator",
            "model": "splits, leaf values and bin edges: the whole model, to every bank",
            "protections": PROTECTIONS["visible"],
        }
    return {
        "setup": "each bank's [row count, positives] through one Gaussian release (charged DP1); bin edges from "
                 "public bounds, no quantile of any row",
        "per tree level": f"at most {max_depth + 1} releases per tree, {n_trees} trees: level 0 the root's "
                          "histograms, each further level the histograms of every child of that level's splits "
                          "(node totals only at the last level), each bank's release clipped (|g| <= c_g, "
                          "0 <= h <= c_h) and noised at the bank (Gaussian, L2 sensitivity sqrt(2d) over d features, "
                          "sqrt(2k) with features_per_tree = k, sqrt 2 for totals), charged to the bank's and the "
                          "run's ledger before it leaves",
        "per tree": "nothing else: no validation loss (early stopping is off under DP)",
        "model": "splits, leaf values and bin edges computed from the noised sums and public bounds only",
        "protections": PROTECTIONS["charged"],
    }


GBDT_THREAT_MODEL = (
    "Semi-honest banks; the coordinator does not collude with a bank and may ask for more than the job's shape. "
    "Raw records never leave their bank: only the wire messages listed here do. Without [privacy] each bank's "
    "quantile cut points, counts and per-node gradient/hessian histograms reach the coordinator exactly (no "
    "secure aggregation exists for trees), so over coordinator-routed rows they can reveal individual records, and "
    "the model is visible to every bank. Every bank checks what the coordinator sends against the request and the "
    "tree's public shape before it reads a row (finite numbers, the nodes its splits created, a sketch at most at "
    "the job's bin count), so a refusal never depends on the rows. Under [privacy.gbdt] each "
    "bank refuses any tree request without noise, releases each tree level's histograms once, through a Gaussian "
    "mechanism whose sensitivity comes from its own clipping, charged to its own ledger before the reply leaves "
    "(and to the run's ledger before the request is sent), refuses repeated nodes and, with the job's shape, "
    "more trees or levels than it announced; bin edges come from public bounds and no validation loss leaves. "
    "The unit of privacy is one training row of one bank; holdout rows (the final evaluation) are outside it.")


def gbdt_protections(dp: bool) -> dict[str, str]:
    """What protects each kind a bank sends (the receipt's per-party table)."""
    if not dp:
        return {"describe": "none: row counts, positive rate, feature names",
                "hgb.sketch": "none: per-feature quantile cut points, row and positive counts",
                "hgb.hist": "none: exact gradient/hessian histograms per node, per bank, in clear",
                "hgb.leaves": "none: validation log-loss sum", "hgb.ack": "none: acknowledgement",
                "evaluation": "none: per-bin counts of holdout scores by label, loss sums, local metrics",
                "error": "none: error type and message"}
    return {"describe": "DP1: training row count through a Gaussian mechanism (sensitivity 1); holdout count and "
                        "feature names in clear",
            "hgb.sketch": "DP1: [row count, positives] through one Gaussian mechanism (sensitivity sqrt 2)",
            "hgb.hist": "DP1: one tree level's clipped gradient/hessian histograms through one Gaussian mechanism "
                        "(sensitivity sqrt(2d); node totals sqrt 2), charged before it leaves",
            "hgb.leaves": "nothing: no validation loss under DP", "hgb.ack": "nothing: acknowledgement",
            "evaluation": "holdout rows (outside the DP unit) scored by the released model: label counts in 100 bins",
            "error": "none: error type and message"}
