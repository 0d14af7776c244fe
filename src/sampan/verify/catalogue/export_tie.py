"""Is the exported model the one the federation trained? (R16-VERDICT-4)

Why: F-AUC-*, F-PREDICT, F-EVALUATE, S-MIA, S-DP-AUDIT-ONE-RUN, S-BYZANTINE and S-BACKDOOR judge the model a platform
exports (GET /model). Nothing else ties that export to the federated training: a platform whose federation learns
nothing could export a model it fitted centrally on the rows it holds and pass them all. The verifier's own party
(its kit, with the tap) receives the global models; a platform that trains what it exports sends its parties the
final model too (Sampan's and Flower's final evaluation, the weak platform's last published model). So:

- the *final global model* is the last model-shaped vector ([coefficients in the party's feature order...,
  intercept]) the verifier's party received after its last update left;
- the export must equal it: max |coefficient or intercept difference| and, when the party received the
  standardisation with it, max |mean difference| and max relative |scale difference|, all within
  `export_global_tol` (thresholds.py). Otherwise the test that judged the export fails (`ExportNotTied`), whatever
  its own figure says;
- a platform that exports no model is judged on its /predict scores: they must be the final global model's scores
  of the same rows (computed by the verifier with the standardisation sent with that model), within the same
  tolerance (`check_scores`).

"Not checked", said in the outcome (the runner adds each test's checks to its evidence and message): the platform has
no party kit or the verifier runs no party of that job (F-AUC-VERTICAL, F-NONIID, F-DROPOUT-RESUME run on the
platform's parties only), the party left before the end, or it received no model after its last update (a platform
that never shows its parties the final model cannot be tied to it this way: the export then stands unverified).
In-process kits report their taps themselves (R16-VERDICT-8): the tie is then as good as the platform's word.
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


def final_global(run: JobRun) -> tuple[dict[str, np.ndarray] | None, str]:
    """The final global model the verifier's party received (vector, and mean/scale when sent), or None and why."""
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
    found: dict[str, np.ndarray] | None = None
    for m in messages[last_sent + 1:]:
        if m.direction != "received":
            continue
        vec = _model_vector(m.payload, d)
        if vec is None:
            continue
        found = {"model": vec}
        for key in ("mean", "scale"):
            a = np.asarray(m.payload.get(key, []))
            if a.dtype.kind == "f" and a.size == d - 1:
                found[key] = a.reshape(-1).astype(np.float64)
    if found is None:
        why = ("the verifier's party received no model after its last update (the platform did not show its "
               "parties the final model)") if last_sent >= 0 else "the verifier's party sent no update"
        return None, why
    return found, "the last model the verifier's party received, after its last update"


def export_tie(run: JobRun) -> dict[str, Any]:
    """The tie of ``run``'s export to the final global model, as evidence (computed once per run)."""
    cached = getattr(run, "export_tie", None)
    if isinstance(cached, dict):
        return cached
    tol = value("export_global_tol")
    record: dict[str, Any] = {"check": "export tie", "job_id": run.job_id, "tolerance": tol}
    if run.model is None:
        record.update(status="not checked", why="no model export")
    else:
        final, why = final_global(run)
        if final is None:
            record.update(status="not checked", why=why)
        else:
            record.update(_compare(run, final, tol), source=why)
    run.export_tie = record  # type: ignore[attr-defined]
    return record


def _compare(run: JobRun, final: dict[str, np.ndarray], tol: float) -> dict[str, Any]:
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
    if std and "mean" in final and "scale" in final:
        index = {c: i for i, c in enumerate(run.model["features"])}
        mean = np.asarray(std["mean"], dtype=np.float64)[[index[c] for c in order]]
        scale = np.asarray(std["scale"], dtype=np.float64)[[index[c] for c in order]]
        gaps["mean"] = float(np.max(np.abs(mean - final["mean"])))
        gaps["scale_relative"] = float(np.max(np.abs(scale - final["scale"]) / np.abs(final["scale"])))
    bad = {k: v for k, v in gaps.items() if not (np.isfinite(v) and v <= tol)}
    if bad:
        what = ", ".join(f"{k} differ by {v:.3g}" for k, v in bad.items())
        return {"status": "mismatch", "gaps": gaps,
                "why": f"the exported model is not the final global model the verifier's party received ({what}; "
                       f"tolerance {tol:g}): the federation did not produce it"}
    return {"status": "match", "gaps": gaps}


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
    record: dict[str, Any] = {"check": "export tie", "job_id": run.job_id, "tolerance": tol, "by": "/predict scores"}
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
        else:
            record.update(status="mismatch", why=f"the platform's /predict scores are not those of the final global "
                          f"model the verifier's party received (max |difference| {gap:.3g}; tolerance {tol:g}): the "
                          "federation did not produce the model it serves")
    with ctx.lock:
        ctx.integrity.append(record)
    if record["status"] == "mismatch":
        raise ExportNotTied(f"{record['why']} (job {run.job_id})", record)
    return record
