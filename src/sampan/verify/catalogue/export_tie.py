"""Is the exported model the one the federation trained? (R16-VERDICT-4)

Why: F-AUC-*, F-PREDICT, F-EVALUATE, S-MIA, S-DP-AUDIT-ONE-RUN, S-BYZANTINE and S-BACKDOOR judge the model a platform
exports (GET /model). Nothing else ties that export to the federated training: a platform whose federation learns
nothing could export a model it fitted centrally on the rows it holds and pass them all. The verifier's own party
(its kit, with the tap) receives the global models; a platform that trains what it exports sends its parties the
final model too (Sampan's and Flower's final evaluation, the weak platform's last published model). So:

- the *final global model* is the last model-shaped vector ([coefficients in the party's feature order...,
  intercept]) the verifier's party received after its last update left;
- the export must equal it: max |coefficient or intercept difference| and, when the party received a
  standardisation (with the final model, or else with the last model that carried one: R16B-8, a final model sent
  without it must not let the export pick its own), max |mean difference| and max relative |scale difference|, all
  within `export_global_tol` (thresholds.py); an export without a standardisation when the party received one, or
  with a scale that is not positive, is not tied. Otherwise the test that judged the export fails
  (`ExportNotTied`), whatever its own figure says;
- the final model must follow from the rounds the party took part in (R16B-1, `final_step`): on the party's own
  rows its AUC may not jump above every model of those rounds by more than `final_auc_jump_max`;
- a platform that exports no model is judged on its /predict scores: they must be the final global model's scores
  of the same rows (computed by the verifier with the standardisation sent with that model), within the same
  tolerance (`check_scores`).

"Not checked", said in the outcome (the runner adds each test's checks to its evidence and message): the platform has
no party kit or the verifier runs no party of that job (F-AUC-VERTICAL, F-NONIID, F-DROPOUT-RESUME run on the
platform's parties only), the party left before the end, or it received no model after its last update (a platform
that never shows its parties the final model cannot be tied to it this way: the export then stands unverified).
In-process kits report their taps themselves (R16-VERDICT-8): the tie is then as good as the platform's word, and
its record says so (``evidence_source``, ``party_in_process``), which the runner writes into the outcome (R16B-5).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, ExportNotTied
from sampan.verify.catalogue.jobs import JobRun
from sampan.verify.thresholds import value

__all__ = ["check_export", "check_scores", "export_tie", "final_global"]

MODEL_KEYS = ("weights", "params")  # where kits put a model vector (weak/Flower: weights; Sampan: params)


def _model_vector(payload: dict[str, Any], d: int) -> np.ndarray | None:
    keys = [k for k in MODEL_KEYS if k in payload] + [k for k in payload if k not in MODEL_KEYS]
    for k in keys:
        a = np.asarray(payload[k])
        if a.dtype.kind == "f" and a.size == d:
            return a.reshape(-1).astype(np.float64)
    return None


def _verifier_party(run: JobRun) -> str | None:
    """The party of ``run`` the verifier operates: the one whose feature list the plane trained on."""
    plane = run.plane
    party = getattr(plane, "_party", None) if plane is not None else None
    return str(party) if party else None


def _standardisation(payload: dict[str, Any], d: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key in ("mean", "scale"):
        a = np.asarray(payload.get(key, []))
        if a.dtype.kind == "f" and a.size == d - 1:
            out[key] = a.reshape(-1).astype(np.float64)
    return out if len(out) == 2 else {}


def final_global(run: JobRun) -> tuple[dict[str, Any] | None, str]:
    """The final global model the verifier's party received (vector, and mean/scale), or None and why.

    The standardisation is the one sent with the final model, else the last one the party received with any model
    (R16B-8: a final model sent without it must not let the export choose its own). "trajectory" lists the models
    of the rounds the party took part in (received up to its last update, and the ones it sent), for `final_step`.
    """
    plane = run.plane
    party = _verifier_party(run)
    if plane is None or party is None:
        return None, "the verifier runs no party of this job (no party kit, or a platform-only job)"
    features = (run.spec.get("features") or {}).get(party)
    if not features:
        return None, f"the job's task lists no features for the verifier's party {party!r}"
    d = len(features) + 1
    messages = list(plane.tap.messages)
    last_sent = max((i for i, m in enumerate(messages) if m.direction == "sent"
                     and m.kind in ("update", "update_clear")), default=-1)
    found: dict[str, Any] | None = None
    std: dict[str, np.ndarray] = {}
    trajectory: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        vec = _model_vector(m.payload, d)
        if vec is None:
            continue
        if m.direction == "received":
            std = _standardisation(m.payload, d) or std
        if i <= last_sent:
            trajectory.append({"model": vec, "direction": m.direction, "round": m.round})
        elif m.direction == "received":
            own = _standardisation(m.payload, d)
            found = {"model": vec, **(own or std), "standardisation_sent_with_it": bool(own)}
    if found is None:
        why = ("the verifier's party received no model after its last update (the platform did not show its "
               "parties the final model)") if last_sent >= 0 else "the verifier's party sent no update"
        return None, why
    found["trajectory"] = trajectory
    return found, "the last model the verifier's party received, after its last update"


def _final_step(run: JobRun, final: dict[str, Any]) -> dict[str, Any]:
    from sampan.verify.catalogue.final_step import final_step

    party = _verifier_party(run)
    return final_step(run.plane, list(run.spec["features"][party]), str(run.spec.get("label", "")),
                      final["trajectory"], final)


def _provenance(run: JobRun) -> dict[str, Any]:
    """Where the tie's evidence comes from (R16B-5): an in-process kit's tap is the platform's own report."""
    from sampan.verify.catalogue.dataplane import provenance

    if run.plane is None:
        return {}
    return {"evidence_source": provenance(run.plane), "party_in_process": bool(run.plane.in_process)}


def export_tie(run: JobRun) -> dict[str, Any]:
    """The tie of ``run``'s export to the final global model, as evidence (computed once per run)."""
    cached = getattr(run, "export_tie", None)
    if isinstance(cached, dict):
        return cached
    tol = value("export_global_tol")
    record: dict[str, Any] = {"check": "export tie", "job_id": run.job_id, "tolerance": tol, **_provenance(run)}
    if run.model is None:
        record.update(status="not checked", why="no model export")
    else:
        final, why = final_global(run)
        if final is None:
            record.update(status="not checked", why=why)
        else:
            record.update(_compare(run, final, tol), source=why)
            if record["status"] == "match":
                _judge_step(record, _final_step(run, final))
    run.export_tie = record  # type: ignore[attr-defined]
    return record


def _judge_step(record: dict[str, Any], step: dict[str, Any]) -> None:
    """Add the final-step check (R16B-1) to a tie ``record``; a final model that jumps makes it a mismatch."""
    record["final_step"] = step
    if step["status"] == "jump":
        record.update(status="mismatch", why=step["why"])


def _compare(run: JobRun, final: dict[str, Any], tol: float) -> dict[str, Any]:
    assert run.model is not None
    party = _verifier_party(run)
    order = list(run.spec["features"][party])
    exported = dict(zip(run.model["features"], np.asarray(run.model["coefficients"], dtype=np.float64),
                        strict=True))
    missing = [c for c in order if c not in exported]
    if missing or len(exported) != len(order):
        return {"status": "mismatch", "why": f"the export's features {sorted(exported)[:5]}... are not the "
                f"{len(order)} features the verifier's party trained on (missing {missing[:3]})"}
    got = np.append([exported[c] for c in order], float(run.model["intercept"]))
    gaps = {"coefficients": float(np.max(np.abs(got - final["model"])))}
    std = run.model.get("standardisation")
    if std:
        index = {c: i for i, c in enumerate(run.model["features"])}
        scale = np.asarray(std["scale"], dtype=np.float64)[[index[c] for c in order]]
        if not np.all(np.isfinite(scale) & (scale > 0)):  # R16B-8: a scale <= 0 turns weights around
            return {"status": "mismatch", "gaps": gaps, "why": "the export's standardisation has a scale that is "
                    "not positive: no federation's standardisation has one"}
    if "mean" in final and "scale" in final:
        # R16B-8: the party received a standardisation (with the final model or, failing that, with an earlier
        # one): the export must carry the same, or it scores rows differently from the federation's model
        if not std:
            return {"status": "mismatch", "gaps": gaps, "why": "the export has no standardisation, but the models "
                    "the verifier's party received carried one: the export does not score as the federation's model"}
        mean = np.asarray(std["mean"], dtype=np.float64)[[index[c] for c in order]]
        gaps["mean"] = float(np.max(np.abs(mean - final["mean"])))
        gaps["scale_relative"] = float(np.max(np.abs(scale - final["scale"]) / np.abs(final["scale"])))
    bad = {k: v for k, v in gaps.items() if not (np.isfinite(v) and v <= tol)}
    if bad:
        what = ", ".join(f"{k} differ by {v:.3g}" for k, v in bad.items())
        return {"status": "mismatch", "gaps": gaps,
                "why": f"the exported model is not the final global model the verifier's party received ({what}; "
                       f"tolerance {tol:g}): the federation did not produce it"}
    sent_with = final.get("standardisation_sent_with_it", True)
    return {"status": "match", "gaps": gaps, **({} if sent_with or "mean" not in final else {
        "standardisation_from": "the last model sent with one (the final model came without)"})}


def check_export(ctx: Context, run: JobRun, what: str = "") -> dict[str, Any]:
    """Record the tie of ``run``'s export in this test's context; raise `ExportNotTied` when it is not tied."""
    record = {**export_tie(run), **({"job": what} if what else {})}
    with ctx.lock:
        ctx.integrity.append(record)
    if record["status"] == "mismatch":
        raise ExportNotTied(f"{what + ': ' if what else ''}{record['why']} (job {run.job_id})", record)
    return record


def check_scores(ctx: Context, run: JobRun, table: dict[str, Any], scores: np.ndarray) -> dict[str, Any]:
    """No export: the platform's /predict ``scores`` of ``table`` (TableData, no label) must be the final global
    model's; recorded like `check_export`, `ExportNotTied` when they are not."""
    tol = value("export_global_tol")
    record: dict[str, Any] = {"check": "export tie", "job_id": run.job_id, "tolerance": tol, "by": "/predict scores",
                              **_provenance(run)}
    final, why = final_global(run)
    if final is None:
        record.update(status="not checked", why=f"no model export, and {why}")
    elif "mean" not in final or "scale" not in final:
        record.update(status="not checked", why="no model export, and the final model reached the verifier's party "
                      "without its standardisation: its scores cannot be recomputed")
    else:
        order = list(run.spec["features"][_verifier_party(run)])
        index = {c: i for i, c in enumerate(table["columns"])}
        rows = np.asarray([[float(r[index[c]]) for c in order] for r in table["rows"]], dtype=np.float64)
        z = ((rows - final["mean"]) / final["scale"]) @ final["model"][:-1] + final["model"][-1]
        mine = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        got = np.asarray(scores, dtype=np.float64).reshape(-1)
        gap = float(np.max(np.abs(got - mine))) if got.shape == mine.shape and got.size else float("inf")
        record.update(gaps={"scores": gap}, source=why)
        if np.isfinite(gap) and gap <= tol:
            record.update(status="match")
            _judge_step(record, _final_step(run, final))
        else:
            record.update(status="mismatch", why=f"the platform's /predict scores are not those of the final global "
                          f"model the verifier's party received (max |difference| {gap:.3g}; tolerance {tol:g}): the "
                          "federation did not produce the model it serves")
    with ctx.lock:
        ctx.integrity.append(record)
    if record["status"] == "mismatch":
        raise ExportNotTied(f"{record['why']} (job {run.job_id})", record)
    return record
