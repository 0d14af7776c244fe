"""Does the final global model follow from the rounds? (R16B-1)

Why: the export tie (`export_tie`) proves the export is the final model the verifier's party received, not that the
federation produced that model. A platform whose rounds learn nothing (learning rate 0: every round's global model
is the start) can publish a central fit of the rows it holds as the *final* model, after the party's last update,
and export the same fit: tied, and judged as if the federation had trained it.

The rule: what the final model can do must already be visible in the training the verifier's party took part in.
On the party's own labelled rows (which the verifier holds), the final model's AUC may exceed the best of

- every global model the party received up to and including the one it trained on in its last round, and
- every model the party itself sent (its local model after training; under secure aggregation its clear input),

by at most `final_auc_jump_max`. FedAvg's final model is a mean of the last round's local models: on the party's own
rows its local model (trained on them, from the same start) scores about as well or better, so an honest final
model does not jump; a final model swapped in after the rounds (a central fit while the rounds stood still) does.
All models are scored with the standardisation the party received with the model it trained on (the final's own
when it came with one), so a swapped standardisation cannot help either (`export_tie` ties it separately).

Limits, said in the catalogue: the verifier sees only its own party. A platform that fabricates the round models
themselves (steps from the start towards a central fit, round after round, that no party's update explains) passes:
the party's local models then improve along with them. Catching that needs the party's share in every step, which
only columns the other parties lack can show (the canary trace, `canaries.canary_trace`). The check is skipped
("not checked") when the party's rows carry no label or one class only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.verify.thresholds import value

__all__ = ["final_step"]


def _rows(plane: Any, features: list[str], label: str) -> tuple[np.ndarray, np.ndarray] | None:
    data = getattr(plane, "_data", None)
    if data is None or label not in data.columns or any(c not in data.columns for c in features):
        return None
    idx = [data.columns.index(c) for c in features]
    k = data.columns.index(label)
    try:
        X = np.asarray([[float(r[i]) for i in idx] for r in data.rows], dtype=np.float64)
        y = np.asarray([float(r[k]) for r in data.rows], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if X.size == 0 or np.unique(y).size != 2:
        return None
    return X, (y == y.max()).astype(np.int64)


def _auc(X: np.ndarray, y: np.ndarray, model: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> float:
    from sampan.verify.datasets import auc

    Z = X if mean is None or scale is None else (X - mean) / np.where(scale == 0, 1.0, scale)
    z = Z @ model[:-1] + model[-1]
    if not np.all(np.isfinite(z)):
        return float("nan")
    return auc(y, z)


def final_step(plane: Any, features: list[str], label: str, trajectory: list[dict[str, Any]],
               final: dict[str, np.ndarray]) -> dict[str, Any]:
    """Judge ``final`` against ``trajectory`` (the models the party received and sent, in order, each a dict with
    "model", "direction" and, when known, "mean"/"scale"); returns evidence with "status" "ok" | "jump" | "not
    checked"."""
    limit = value("final_auc_jump_max")
    record: dict[str, Any] = {"rule": "final model AUC on the verifier's party's rows <= best round/own model AUC "
                              "+ final_auc_jump_max", "limit": limit}
    rows = _rows(plane, features, label)
    if rows is None:
        return {**record, "status": "not checked", "why": "the verifier's party's rows carry no two-class label"}
    if not trajectory:
        return {**record, "status": "not checked", "why": "the verifier's party saw no round model"}
    X, y = rows
    mean, scale = final.get("mean"), final.get("scale")
    seen = [_auc(X, y, t["model"], mean, scale) for t in trajectory]
    finite = [a for a in seen if np.isfinite(a)]
    final_auc = _auc(X, y, final["model"], mean, scale)
    best = max(finite) if finite else 0.5
    record.update(final_auc=final_auc, best_round_auc=best, received_round_aucs=[
        round(a, 4) for a, t in zip(seen, trajectory, strict=True) if t["direction"] == "received"],
        own_update_aucs=[round(a, 4) for a, t in zip(seen, trajectory, strict=True) if t["direction"] == "sent"])
    if np.isfinite(final_auc) and final_auc > best + limit:
        return {**record, "status": "jump", "why": (
            f"the final model scores AUC {final_auc:.4f} on the verifier's party's rows, {final_auc - best:.4f} above "
            f"every model of the rounds it took part in (best {best:.4f}; limit {limit:g}): the final model does not "
            "follow from the federated training")}
    return {**record, "status": "ok"}
