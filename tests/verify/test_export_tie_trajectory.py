"""The export tie's standardisation fallback (R16B-8) and final-step check (R16B-1), on a recorded tap (fast)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from sampan.verify.api import TableData
from sampan.verify.catalogue.export_tie import export_tie, final_global
from sampan.verify.catalogue.jobs import JobRun
from sampan.verify.kits import RecordingTap

FEATURES = ["a", "b", "c"]


def _rows(seed: int = 3, n: int = 300) -> tuple[TableData, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (n, 3)) * [1.0, 2.0, 5.0] + [0.0, 1.0, 10.0]
    w = np.array([1.5, -1.0, 0.4])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-((X - [0.0, 1.0, 10.0]) / [1.0, 2.0, 5.0]) @ w))).astype(float)
    return TableData(columns=[*FEATURES, "y"], rows=[[*map(float, x), float(t)] for x, t in zip(X, y, strict=True)]), X


def _run(rounds: list[np.ndarray], final: np.ndarray, *, final_std: bool, export: dict[str, Any]) -> JobRun:
    data, X = _rows()
    mean, scale = X.mean(axis=0), X.std(axis=0)
    tap = RecordingTap()
    for r, g in enumerate(rounds, start=1):
        tap.received("model", r, {"weights": g, "mean": mean, "scale": scale})
        tap.sent("update", r, {"weights": g, "n": np.array([300])})
    extra = {"mean": mean, "scale": scale} if final_std else {"mean": np.zeros(0), "scale": np.zeros(0)}
    tap.received("model", len(rounds) + 1, {"weights": final, **extra})
    plane = SimpleNamespace(tap=tap, _party="p", _data=data, in_process=False)
    spec = {"features": {"p": FEATURES}, "label": "y"}
    model = {"features": FEATURES, "coefficients": list(export["w"][:-1]), "intercept": float(export["w"][-1]),
             "standardisation": export.get("std", {"mean": mean.tolist(), "scale": scale.tolist()})}
    return JobRun(spec=spec, project_id="pr", job_id="j-1", job={}, results=None, model=model, seconds=0.0,
                  plane=plane)


def test_a_final_model_without_standardisation_is_tied_to_the_last_one_received() -> None:
    g = np.array([1.4, -0.9, 0.35, 0.0])
    data, X = _rows()
    mean, scale = X.mean(axis=0), X.std(axis=0)
    # the export keeps the coefficients but picks its own (positive) scales and mean
    run = _run([g, g], g, final_std=False, export={"w": g, "std": {"mean": (mean + 1).tolist(),
                                                                    "scale": (scale * 2).tolist()}})
    final, _ = final_global(run)
    assert final is not None and np.allclose(final["scale"], scale) and not final["standardisation_sent_with_it"]
    record = export_tie(run)
    assert record["status"] == "mismatch", record
    assert record["gaps"]["scale_relative"] > 0.5


def test_an_export_without_standardisation_or_with_negative_scales_is_not_tied() -> None:
    g = np.array([1.4, -0.9, 0.35, 0.0])
    _, X = _rows()
    run = _run([g, g], g, final_std=True, export={"w": g, "std": None})
    assert export_tie(run)["status"] == "mismatch"
    bad = {"mean": X.mean(axis=0).tolist(), "scale": (X.std(axis=0) * [1, -1, 1]).tolist()}
    run = _run([g, g], g, final_std=True, export={"w": g, "std": bad})
    assert "not positive" in export_tie(run)["why"]


def test_a_final_model_that_jumps_past_every_round_is_not_tied() -> None:
    zero = np.zeros(4)
    good = np.array([1.4, -0.9, 0.35, 0.0])
    record = export_tie(_run([zero, zero, zero], good, final_std=True, export={"w": good}))
    assert record["status"] == "mismatch" and record["final_step"]["status"] == "jump", record
    assert record["final_step"]["best_round_auc"] == 0.5


def test_an_honest_trajectory_passes_the_final_step() -> None:
    steps = [np.array([1.4, -0.9, 0.35, 0.0]) * t for t in (0.0, 0.5, 0.8, 0.95)]
    final = np.array([1.4, -0.9, 0.35, 0.0])
    record = export_tie(_run(steps, final, final_std=True, export={"w": final}))
    assert record["status"] == "match" and record["final_step"]["status"] == "ok", record
    assert record["evidence_source"].startswith("verifier-observed") and record["party_in_process"] is False
