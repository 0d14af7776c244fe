"""Jobs shared by several tests (run once per evaluation through `Context.once`) and small judging helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sampan.verify.catalogue.base import Context, Result
from sampan.verify.catalogue.data import HORIZONTAL_PARTIES, VERTICAL_PARTIES
from sampan.verify.catalogue.export_tie import check_export, check_scores
from sampan.verify.catalogue.jobs import JobRun, PartySpec, horizontal_spec, job_seed, linear_scores, run_job
from sampan.verify.datasets import ID, LABEL, auc, predict_lr, table_data
from sampan.verify.thresholds import value

if TYPE_CHECKING:  # scipy is imported only when a verdict needs it
    from sampan.verify.auc_compare import AucComparison

__all__ = ["quick_job", "horizontal_parties", "holdout_auc", "holdout_scores", "vertical_job", "judge_auc",
           "judge_auc_noninferior", "compare_to_pooled", "describe_floor", "plane_for", "robust_parties"]

QUICK_ROUNDS = 15


def plane_for(ctx: Context, **options: Any) -> Any:
    """The verifier's own party for a job, or None when the platform has no kit (black-box only)."""
    if not ctx.kit:
        return None
    from sampan.verify.catalogue.dataplane import VerifierParty

    return VerifierParty(ctx, **options)


def horizontal_parties(ctx: Context, *, noniid: bool = False, verifier: bool = True) -> list[PartySpec]:
    """Three data owners; the last is run by the verifier when the platform has a kit."""
    out = []
    for i, name in enumerate(HORIZONTAL_PARTIES):
        mine = verifier and bool(ctx.kit) and i == len(HORIZONTAL_PARTIES) - 1
        out.append(PartySpec(name, "data_owner", ctx.data.party_data(i, noniid=noniid),
                             "verifier" if mine else "platform"))
    return out


ROBUST_PARTIES = ("bank_a", "bank_d", "bank_e", "bank_b", "bank_c")


def robust_parties(ctx: Context) -> list[PartySpec]:
    """Five data owners for the robust-aggregation jobs (S-BYZANTINE, S-BACKDOOR): bank_a's rows (half the training
    rows) split in three (bank_a, bank_d, bank_e), then bank_b, and bank_c, run by the verifier (the attacker) when
    the platform has a kit. No new draw: the same rows as the three-party split, so bank_c holds the same 20%.

    Why five: with three parties a coordinate median lets one attacker pick either honest value per coordinate
    (S-BACKDOOR failed an honest Sampan 3 runs in 10); with four honest parties the median stays between the honest
    parties' middle values, and Krum's n >= 2f + 3 holds for f = 1.
    """
    t, cols = ctx.data.table, ctx.data.columns
    first, *rest = ctx.data.parts
    rows = [*np.array_split(first, 3), *rest]
    last = len(rows) - 1
    return [PartySpec(name, "data_owner", table_data(t, r, cols), "verifier" if ctx.kit and i == last else "platform")
            for i, (name, r) in enumerate(zip(ROBUST_PARTIES, rows, strict=True))]


def quick_job(ctx: Context) -> JobRun:
    """The evaluation's one small horizontal job (plain, as claimed by default: secure aggregation if claimed)."""

    def make() -> JobRun:
        secagg = bool(ctx.claims.get("secure_aggregation")) and "secure_aggregation" in ctx.capabilities
        parties = horizontal_parties(ctx)
        spec = horizontal_spec(ctx, [p.name for p in parties], rounds=QUICK_ROUNDS, secure_aggregation=secagg)
        plane = plane_for(ctx) if any(p.operated_by == "verifier" for p in parties) else None
        return run_job(ctx, spec, parties, prefix="quick", plane=plane)

    run: JobRun = ctx.once("quick_job", make)
    return run


def holdout_scores(ctx: Context, run: JobRun, *, qualify: dict[str, str] | None = None,
                   columns: list[str] | None = None) -> tuple[np.ndarray | None, float, str]:
    """(scores or None, AUC, how) on the verifier's holdout: from the exported model when there is one, else the
    platform's scores; None only when the platform offers neither an export nor /predict (its /evaluate AUC).

    The holdout leaves the verifier only when the platform exports no model: its features (no labels) to /predict
    when offered, the labelled rows to /evaluate as a last resort (R16-VERDICT-12; said in the returned "how").
    An export (or, without one, /predict scores) that is not the final global model the verifier's party received
    raises `ExportNotTied` (`export_tie`; R16-VERDICT-4).
    """
    table = table_data(ctx.data.table, ctx.data.holdout, columns or ctx.data.columns)
    y = ctx.data.table.y[ctx.data.holdout]
    if run.model is not None:
        check_export(ctx, run)  # R16-VERDICT-4: the export judged must be the federation's final model
        p = linear_scores(run.model, table, qualify=qualify)
        return p, auc(y, p), "exported model scored by the verifier"
    if "predict" in ctx.capabilities:
        unlabelled = table_data(ctx.data.table, ctx.data.holdout, columns or ctx.data.columns, label=False)
        body = ctx.api.ok("POST", f"/jobs/{run.job_id}/predict", unlabelled)
        scores = np.asarray(body["scores"], dtype=np.float64)
        check_scores(ctx, run, unlabelled, scores)  # no export: the scores must be the federation's model's
        return (scores, auc(y, scores), "no model export: platform /predict scores on the holdout's features "
                "(labels withheld; the platform has now seen these rows' features)")
    check_export(ctx, run)  # records "not checked": an AUC from /evaluate cannot be tied to any model
    body = ctx.api.ok("POST", f"/jobs/{run.job_id}/evaluate", table)
    return None, float(body["metrics"]["auc"]), ("no model export: platform /evaluate on the verifier's labelled "
                                                 "holdout (the platform has now seen it)")


def holdout_auc(ctx: Context, run: JobRun, *, qualify: dict[str, str] | None = None,
                columns: list[str] | None = None) -> tuple[float, str]:
    """AUC on the verifier's holdout and how it was obtained (see `holdout_scores`)."""
    _, found, how = holdout_scores(ctx, run, qualify=qualify, columns=columns)
    return found, how


def judge_auc(found: float, baseline: float, margin_key: str, how: str, run: JobRun, *, bare: bool = False) -> Result:
    """The bare point-estimate rule: AUC >= pooled - margin. Only where no scores give a paired bound."""
    margin = value(margin_key)
    floor = baseline - margin
    return Result("pass" if found >= floor else "fail",
                  f"holdout AUC {found:.4f} vs floor {floor:.4f} (pooled {baseline:.4f} - {margin}"
                  + (", bare margin: no scores for a paired bound)" if bare else ")"),
                  figures={"auc": found, "pooled_auc": baseline, "floor": floor, "job_seconds": run.seconds},
                  evidence={"how": how, "job_id": run.job_id, "states": run.states, "rounds": run.aucs})


def compare_to_pooled(ctx: Context, run: JobRun, margin_key: str, *, cap_key: str = "auc_max_deficit",
                      vertical: bool = False) -> tuple[AucComparison | None, float, str]:
    """(paired comparison or None, holdout AUC, how) of the run's final model against the pooled model.

    The pooled model (horizontal, or the vertical one over both parties' columns) scores the same holdout rows the
    platform's model is judged on; None when the platform gives no scores (only /evaluate): no paired bound exists.
    """
    from sampan.verify.auc_compare import noninferior

    if vertical:
        v = ctx.data.vertical
        columns = v.label_columns + v.feature_columns
        scores, found, how = holdout_scores(ctx, run, qualify=vertical_qualify(ctx), columns=columns)
        base = ctx.data.vertical_baseline
    else:
        columns = ctx.data.columns
        scores, found, how = holdout_scores(ctx, run)
        base = ctx.data.baseline
    if scores is None:
        return None, found, how
    X = ctx.data.table.cols(columns)[ctx.data.holdout]
    reference = predict_lr((X - base.mean) / base.scale, base.coef, base.intercept)
    c = noninferior(ctx.data.table.y[ctx.data.holdout], scores, reference, margin=value(margin_key),
                    alpha=value("auc_noninferiority_alpha"), power=value("auc_noninferiority_power"),
                    max_deficit=value(cap_key))
    return c, found, how


def describe_floor(c: AucComparison) -> str:
    """'floor F (pooled P - margin - z x SE)' or '... - the cap C)': how the lowest passing AUC was set."""
    capped = c.margin + c.z * c.se > c.max_deficit
    return (f"floor {c.floor:.4f} (pooled {c.reference_auc:.4f} - "
            + (f"the cap {c.max_deficit}" if capped else f"{c.margin} - {c.z:.2f} x SE {c.se:.4f}") + ")")


def judge_auc_noninferior(ctx: Context, run: JobRun, margin_key: str, *, cap_key: str = "auc_max_deficit",
                          vertical: bool = False) -> Result:
    """Pass unless the platform's holdout AUC is significantly below the pooled baseline's minus the margin, or
    further below it than the cap (``cap_key``).

    Both models score the same holdout rows, so the paired DeLong test (`sampan.verify.auc_compare`) judges their
    difference with its own, much smaller, noise: a bare point estimate against a 0.02 margin failed an honest
    platform about 1 draw in 10 on a 250-row holdout. Without scores (only /evaluate) no paired bound exists and
    the margin applies to the point estimate, as before, and the message says so.
    """
    c, found, how = compare_to_pooled(ctx, run, margin_key, cap_key=cap_key, vertical=vertical)
    if c is None:
        base = ctx.data.vertical_baseline if vertical else ctx.data.baseline
        return judge_auc(found, base.auc, margin_key, how + "; no scores, so no paired bound: bare margin", run,
                         bare=True)
    return Result("pass" if c.passed else "fail",
                  f"holdout AUC {c.auc:.4f} vs {describe_floor(c)}; detects a gap of {c.detectable_gap:.3f} with "
                  f"{value('auc_noninferiority_power'):.0%} power",
                  figures={"auc": c.auc, "pooled_auc": c.reference_auc, "floor": c.floor, "difference": c.difference,
                           "se_difference": c.se, "detectable_gap": c.detectable_gap, "job_seconds": run.seconds},
                  evidence={"how": how, "job_id": run.job_id, "states": run.states, "rounds": run.aucs,
                            "rule": "paired DeLong non-inferiority (see sampan.verify.auc_compare)",
                            "comparison": c.to_dict()})


def vertical_job(ctx: Context) -> JobRun:
    """Bank (label holder) and bureau (feature holder) over string ids with a partial overlap."""

    def make() -> JobRun:
        v = ctx.data.vertical
        t = ctx.data.table
        bank, bureau = VERTICAL_PARTIES
        parties = [PartySpec(bank, "label_holder", table_data(t, v.label_rows, v.label_columns, ids=True)),
                   PartySpec(bureau, "feature_holder", table_data(t, v.feature_rows, v.feature_columns, label=False,
                                                                  ids=True))]
        spec = {"kind": "vertical", "model": "logistic_regression", "label": LABEL, "id_column": ID,
                "features": {bank: list(v.label_columns), bureau: list(v.feature_columns)}, "rounds": 10,
                "local_epochs": 1, "learning_rate": 0.5, "batch_size": 64, "l2": 0.0,
                "secure_aggregation": False, "seed": job_seed(ctx), "timeout_s": 300}
        return run_job(ctx, spec, parties, prefix="vertical")

    run: JobRun = ctx.once("vertical_job", make)
    return run


def vertical_qualify(ctx: Context) -> dict[str, str]:
    bank, bureau = VERTICAL_PARTIES
    v = ctx.data.vertical
    out = {f"{bank}:{c}": c for c in v.label_columns}
    out.update({f"{bureau}:{c}": c for c in v.feature_columns})
    return out


def max_abs(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))) if len(a) else 0.0
