"""One evaluation of a synthetic table: fidelity, utility, privacy, constraints, bias, and the receipt.

The evaluation compares against real data, so it runs where the real data is (the data owner's side).
Its full document is CONFIDENTIAL TO THE DATA OWNER: fidelity (real means, pair tables), TSTR/TRTR on
real rows, distances to real records, the membership attack, real constraint-violation rates and real
group rates are exact statistics of the real table, not DP releases. `releasable_part` keeps only what
is post-processing of the DP model: statistics of the synthetic table, the model's own (DP) group
statistics, the sampling report and the privacy receipt. It is built from a whitelist, so a field added
to the evaluation later stays confidential until someone decides otherwise. Every part that lacks its
inputs is skipped and says why (in the confidential document: a reason may describe the real table).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.synth.bias import bias_report, group_stats
from sampan.synth.constraints import Constraint
from sampan.synth.fidelity import fidelity
from sampan.synth.model import SynthModel
from sampan.synth.privacy_eval import privacy
from sampan.synth.schema import SynthSchema
from sampan.synth.tstr import utility

__all__ = ["CONFIDENTIAL_NOTICE", "RELEASABLE_NOTICE", "evaluate", "headline", "releasable_part"]

CONFIDENTIAL_NOTICE = ("Confidential to the data owner: contains exact statistics of the real table (not protected "
                       "by differential privacy). Do not share; share the releasable report instead.")
RELEASABLE_NOTICE = ("Releasable: computed only from the synthetic table and the model's DP tables and receipt "
                     "(post-processing of the DP release); no statistic of the real table.")


def _rows(table: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(table.values())))


def _constraint_report(constraints: Sequence[Constraint], synthetic: Mapping[str, np.ndarray],
                       real: Mapping[str, np.ndarray] | None) -> list[dict[str, Any]]:
    out = []
    for c in constraints:
        bad = ~c.holds(synthetic)
        entry: dict[str, Any] = {"constraint": c.text, "violations": int(bad.sum()),
                                 "violation_rate": float(bad.mean())}
        if real is not None:
            entry["real_violation_rate"] = float((~c.holds(real)).mean())
        out.append(entry)
    return out


def evaluate(
    schema: SynthSchema,
    synthetic: Mapping[str, np.ndarray],
    *,
    real_train: Mapping[str, np.ndarray] | None = None,
    holdout: Mapping[str, np.ndarray] | None = None,
    model: SynthModel | None = None,
    constraints: Sequence[Constraint] = (),
    groups: Sequence[str] = (),
    sample_report: Mapping[str, Any] | None = None,
    privacy_rows: int = 2000,
) -> dict[str, Any]:
    """The evaluation document (JSON-able). ``real_train``: the rows the synthesiser was fitted on;
    ``holdout``: real rows it never saw (needed for utility and the privacy baselines)."""
    started = time.perf_counter()
    doc: dict[str, Any] = {"confidentiality": {"audience": "data owner only", "notice": CONFIDENTIAL_NOTICE},
                           "rows": {"synthetic": _rows(synthetic)}, "skipped": {}}
    if real_train is not None:
        doc["rows"]["real_train"] = _rows(real_train)
        doc["fidelity"] = fidelity(real_train, synthetic, schema)
    else:
        doc["skipped"]["fidelity"] = "no real table given"
    if holdout is not None:
        doc["rows"]["holdout"] = _rows(holdout)
    if real_train is not None and holdout is not None and schema.label is not None:
        holdout_classes = np.unique(holdout[schema.label]).size
        if holdout_classes < 2:
            doc["skipped"]["utility"] = (f"the holdout's label '{schema.label}' has one class only, so AUC is "
                                         "undefined; give a holdout with both classes")
        else:
            doc["utility"] = utility(real_train, synthetic, holdout, schema)
    else:
        doc["skipped"]["utility"] = "needs the real training table, a real holdout and a label"
    if real_train is not None and holdout is not None:
        doc["privacy"] = privacy(real_train, synthetic, holdout, schema, max_rows=privacy_rows)
    else:
        doc["skipped"]["privacy"] = "needs the real training table and a real holdout"
    doc["constraints"] = _constraint_report(constraints, synthetic, real_train)
    if groups:
        if model is not None:
            doc["bias"] = bias_report(model, synthetic, groups, real_train)
        else:
            doc["bias"] = {g: {"after_synthetic": group_stats(synthetic, schema, g),
                               **({"real": group_stats(real_train, schema, g)} if real_train is not None else {})}
                           for g in groups}
    if sample_report is not None:
        doc["sampling"] = dict(sample_report)
    if model is not None:
        r = model.receipt
        doc["privacy_receipt"] = {
            "epsilon": r.get("epsilon"), "delta": r.get("delta"), "rho": r.get("rho"),
            "accountant": r.get("accountant"), "domain": r.get("domain"),
            "reproducible_not_private": r.get("reproducible_not_private"),
            "parties": {p: {"epsilon_spent": v["epsilon_spent"], "releases": len(v["releases"])}
                        for p, v in r.get("parties", {}).items()},
        }
    doc["seconds"] = time.perf_counter() - started
    return doc


def headline(doc: Mapping[str, Any]) -> dict[str, float]:
    """The few numbers a reader wants first."""
    out: dict[str, float] = {}
    if "fidelity" in doc:
        out["fidelity_score"] = doc["fidelity"]["score"]
    if "utility" in doc:
        out["tstr_auc"] = doc["utility"]["tstr_auc"]
        out["trtr_auc"] = doc["utility"]["trtr_auc"]
    if "privacy" in doc:
        out["mia_auc"] = doc["privacy"]["membership_inference"]["auc"]
        out["share_closer_to_train"] = doc["privacy"]["dcr"]["share_closer_to_train"]
        out["exact_copies_count"] = doc["privacy"]["exact_copies"]["of_training_rows"]
    if doc.get("constraints"):
        out["constraint_violations_count"] = sum(c["violations"] for c in doc["constraints"])
    return {k: v for k, v in out.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def releasable_part(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an evaluation that may leave the data owner: a whitelist of fields that depend only on
    the synthetic table and the DP model (see the module doc)."""
    out: dict[str, Any] = {"confidentiality": {"audience": "releasable", "notice": RELEASABLE_NOTICE},
                           "rows": {"synthetic": doc["rows"]["synthetic"]}}
    if doc.get("constraints"):
        out["constraints"] = [{k: c[k] for k in ("constraint", "violations", "violation_rate")}
                              for c in doc["constraints"]]
    if doc.get("bias"):
        out["bias"] = {col: {k: entry[k] for k in ("before_model", "after_synthetic") if k in entry}
                       for col, entry in doc["bias"].items()}
    if "sampling" in doc:
        out["sampling"] = doc["sampling"]
    if "privacy_receipt" in doc:
        out["privacy_receipt"] = doc["privacy_receipt"]
    return out
