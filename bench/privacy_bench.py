"""Differential privacy benchmark: AUC vs epsilon (DP2, DP3, DP2+DP3), DP-SGD throughput, Opacus.

Run from the repository root:
    .venv/bin/python bench/privacy_bench.py                   # everything (Opacus runs in .venv-bench)
    .venv/bin/python bench/privacy_bench.py --only auc        # or throughput, opacus
    .venv/bin/python bench/privacy_bench.py --quick           # epsilon 1 and 8 only, fewer repeats
Opacus (optional) is installed only in .venv-bench (bench/requirements-opacus.txt); the Opacus part
runs in a child process of that interpreter, once per thread count, with the BLAS and torch thread
counts set alike for both libraries.
Ratios are measured side by side in one run; absolute seconds vary on a shared machine. Results are
printed and written to bench/results/privacy.json (merged: --only updates its own sections), and the
AUC part also writes bench/results/privacy_auc_vs_epsilon.html.
"""

from __future__ import annotations

import argparse
import cProfile
import html
import json
import logging
import math
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sampan.config import RunConfig, parse_config
from sampan.horizontal import TrainConfig, train
from sampan.horizontal.simulation import load_splits, pooled
from sampan.metrics import roc_auc
from sampan.models import model_from_config
from sampan.privacy import DPSGDConfig, GaussianMechanism, dp_sgd_train, secure_generator
from sampan.report.svg import line_chart
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SEED = 7
ROUNDS = 20
DELTA = 1e-5
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
QUICK_EPSILONS = (1.0, 8.0)
LEVELS = {"DP2": ("dp2",), "DP3": ("dp3",), "DP2+DP3": ("dp2", "dp3")}
SOURCE = {"kind": "taiwan", "n_parties": 5, "partition": "dirichlet", "alpha": 0.5}
# DP hyperparameters: one setting per model, the same for every epsilon and level (how they were
# chosen is in docs/benchmarks.md). The non-private reference (epsilon = inf) uses the same training
# settings; the MLP is also run with the issue-2 settings (lr 0.05, batch 64) as a second reference.
MODELS: dict[str, dict[str, Any]] = {
    "logistic": {"model": {"kind": "logistic"},
                 "training": {"learning_rate": 0.05, "batch_size": 64},
                 "dp2": {"max_grad_norm": 1.0}, "dp3": {"clip": 0.1, "mode": "central"}},
    "mlp": {"model": {"kind": "mlp", "hidden": [32]},
            "training": {"learning_rate": 0.5, "batch_size": 256},
            "dp2": {"max_grad_norm": 1.0}, "dp3": {"clip": 0.1, "mode": "central"}},
}
# Under [privacy] the standardisation statistics go through DP1 (clipped to public ranges, noised, charged):
# the ranges documented for the UCI Taiwan dataset (NT$ amounts, codes), not ranges read off the data.
DP1 = {"noise_multiplier": 10.0, "bounds": {
    "LIMIT_BAL": [0, 1_000_000], "SEX": [1, 2], "EDUCATION": [0, 6], "MARRIAGE": [0, 3], "AGE": [20, 80],
    "PAY_0": [-2, 8], **{f"PAY_{i}": [-2, 8] for i in range(2, 7)},
    **{f"BILL_AMT{i}": [-200_000, 1_000_000] for i in range(1, 7)},
    **{f"PAY_AMT{i}": [0, 1_000_000] for i in range(1, 7)}}}
ISSUE2_TRAINING = {"learning_rate": 0.05, "batch_size": 64}
GOAL_GAP = 0.02  # at epsilon = 1: AUC within 0.02 of the non-private run
# DP-SGD throughput and the Opacus comparison
THROUGHPUT_BATCHES = (64, 256)
DP_NOISE, DP_CLIP = 1.0, 1.0
TP_LR = 0.05


def source_fingerprint() -> dict[str, str]:
    """sha256 (first 12 hex) of the files whose code is measured: DP-SGD changes under active development."""
    import hashlib

    files = ["src/sampan/privacy/dpsgd.py", "src/sampan/models/base.py", "src/sampan/models/logistic.py",
             "src/sampan/models/mlp.py", "src/sampan/models/local_training.py", "src/sampan/privacy/ledger.py",
             "src/sampan/privacy/calibration.py", "src/sampan/privacy/dp3.py"]
    return {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:12] for f in files if (ROOT / f).exists()}


def machine() -> str:
    return (f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


# --- 1. AUC vs epsilon ----------------------------------------------------------------------------------
def run_config(model: str, privacy: dict[str, Any] | None, report_dir: Path,
               training: dict[str, Any] | None = None) -> RunConfig:
    spec = MODELS[model]
    data: dict[str, Any] = {
        "run": {"name": f"privacy-bench-{model}", "rounds": ROUNDS, "seed": SEED, "report_dir": str(report_dir),
                "eval_every": ROUNDS},
        "model": spec["model"], "training": training or spec["training"], "strategy": {"name": "fedavg"},
        "source": SOURCE}
    if privacy is not None:
        data["privacy"] = privacy
    return parse_config(data)


def privacy_section(model: str, level: str, epsilon: float, noise: dict[str, float] | None) -> dict[str, Any]:
    """'auto' noise, or the multipliers an earlier 'auto' run chose (calibration is deterministic)."""
    spec = MODELS[model]
    section: dict[str, Any] = {"epsilon": epsilon, "delta": DELTA, "dp1": DP1}
    for mech in LEVELS[level]:
        z = noise[mech.upper()] if noise else "auto"
        section[mech] = {"noise_multiplier": z, **spec[mech]}
    return section


def one_run(config: RunConfig, tmp: Path, X_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    store = Store.open(f"sqlite:///{tmp / f'{time.monotonic_ns()}.db'}")
    started = time.perf_counter()
    finished = start_run(config, store)
    seconds = time.perf_counter() - started
    outcome = finished.outcome
    checkpoint = store.latest_checkpoint(outcome.run_id)
    noise = dict(checkpoint.meta.get("noise") or {}) if checkpoint is not None else {}
    store.close()
    scaler = outcome.scaler
    auc = roc_auc(y_test, outcome.model.predict_proba(outcome.params, (X_test - scaler["mean"]) / scaler["scale"]))
    eps_by_party = ({p: v["epsilon_spent"] for p, v in outcome.privacy["parties"].items()}
                    if outcome.privacy else {})
    return {"auc": float(auc), "federated_auc": outcome.final_metrics.get("auc"), "noise": noise,
            "epsilon_spent_by_party": eps_by_party,
            "max_epsilon_spent": max(eps_by_party.values()) if eps_by_party else None,
            "budget_stop": outcome.budget_stop, "rounds": outcome.rounds, "seconds": seconds}


def summarise(model: str, level: str, epsilon: float | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    aucs = [r["auc"] for r in runs]
    spent = [r["max_epsilon_spent"] for r in runs if r["max_epsilon_spent"] is not None]
    return {"model": model, "level": level, "epsilon": epsilon if epsilon is not None else "inf", "delta": DELTA,
            "auc_mean": statistics.fmean(aucs), "auc_sd": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
            "auc_min": min(aucs), "auc_max": max(aucs), "aucs": aucs,
            "noise_multipliers": runs[0]["noise"],
            "max_epsilon_spent": max(spent) if spent else None,
            "within_budget": all(s <= epsilon * (1 + 1e-9) for s in spent) if epsilon is not None else None,
            "budget_stops": [r["budget_stop"] for r in runs if r["budget_stop"]],
            "rounds_completed": [r["rounds"] for r in runs],
            # first run: noise 'auto' (calibration included); later repeats reuse the chosen multipliers
            "seconds_with_calibration": runs[0]["seconds"],
            "seconds_fixed_noise_min": min((r["seconds"] for r in runs[1:]), default=None),
            "repeats": len(runs)}


def auc_vs_epsilon(epsilons: tuple[float, ...], repeats: int) -> dict[str, Any]:
    probe = run_config("logistic", None, Path(tempfile.gettempdir()))
    X_test, y_test = pooled(load_splits(probe, SEED), "test")
    rows: list[dict[str, Any]] = []
    references: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for model in MODELS:
            base = [one_run(run_config(model, None, tmp), tmp, X_test, y_test) for _ in range(max(1, min(repeats, 2)))]
            rows.append(summarise(model, "none", None, base))
            issue2 = one_run(run_config(model, None, tmp, training=ISSUE2_TRAINING), tmp, X_test, y_test)
            references[model] = {"same_settings_auc": base[0]["auc"], "issue2_settings_auc": issue2["auc"],
                                 "issue2_settings": ISSUE2_TRAINING, "settings": MODELS[model]["training"]}
            print(f"{model:8s} non-private AUC {base[0]['auc']:.4f} (same settings as DP), "
                  f"{issue2['auc']:.4f} (issue-2 settings)  {base[0]['seconds']:.1f}s", flush=True)
            for level in LEVELS:
                for eps in epsilons:
                    runs = [one_run(run_config(model, privacy_section(model, level, eps, None), tmp), tmp,
                                    X_test, y_test)]
                    fixed = privacy_section(model, level, eps, runs[0]["noise"])
                    runs += [one_run(run_config(model, fixed, tmp), tmp, X_test, y_test) for _ in range(repeats - 1)]
                    row = summarise(model, level, eps, runs)
                    rows.append(row)
                    z = ", ".join(f"{k} z={v:.3g}" for k, v in row["noise_multipliers"].items())
                    print(f"{model:8s} {level:8s} eps {eps:<4g} AUC {row['auc_mean']:.4f} ± {row['auc_sd']:.4f} "
                          f"[{row['auc_min']:.4f}, {row['auc_max']:.4f}]  {z}  max eps spent "
                          f"{row['max_epsilon_spent']:.3f}  {row['seconds_with_calibration']:.1f}s"
                          f"{'' if row['within_budget'] else '  OVER BUDGET'}", flush=True)
    goals = []
    for model in MODELS:
        ref = max(references[model]["same_settings_auc"], references[model]["issue2_settings_auc"])
        for level in LEVELS:
            hit = [r for r in rows if r["model"] == model and r["level"] == level and r["epsilon"] == 1.0]
            if hit:
                gap = hit[0]["auc_mean"] - ref
                goals.append({"model": model, "level": level, "epsilon": 1.0, "auc_mean": hit[0]["auc_mean"],
                              "non_private_auc": ref, "gap": gap, "met": gap >= -GOAL_GAP})
    return {"task": "Taiwan default, 5 banks, Dirichlet alpha=0.5 (seed 7), FedAvg, 20 rounds x 1 local epoch",
            "delta": DELTA, "rounds": ROUNDS, "repeats": repeats, "models": MODELS, "references": references,
            "rows": rows, "goal_epsilon_1": goals, "total_seconds": time.perf_counter() - started,
            "note": "DP noise and Poisson sampling come from the OS CSPRNG, so private AUCs vary run to run: "
                    "mean, sd, min and max over the repeats; the non-private run is deterministic (seed 7)"}


def write_html(auc: dict[str, Any], path: Path, date: str) -> None:
    rows = auc["rows"]
    eps_values = sorted({r["epsilon"] for r in rows if r["epsilon"] != "inf"})
    lo, hi = math.log2(min(eps_values)), math.log2(max(eps_values))

    def series_for(model: str) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        for level in LEVELS:
            pts = [(math.log2(r["epsilon"]), r["auc_mean"]) for r in rows
                   if r["model"] == model and r["level"] == level]
            out[f"{model} {level}"] = sorted(pts)
        ref = next(r for r in rows if r["model"] == model and r["level"] == "none")["auc_mean"]
        out[f"{model} non-private (ε = ∞)"] = [(lo, ref), (hi, ref)]
        return out

    x_label = "log₂ ε   (−1 = 0.5, 0 = 1, 1 = 2, 2 = 4, 3 = 8);  δ = 1e-5"
    per_model = {model: series_for(model) for model in MODELS}
    # DP lines first, references last (the palette's seventh colour is black, the eighth a dashed blue)
    combined = {k: v for s in per_model.values() for k, v in s.items() if "non-private" not in k}
    combined.update({k: v for s in per_model.values() for k, v in s.items() if "non-private" in k})
    charts = [line_chart(combined, title="Test AUC vs ε: all models and levels (mean over repeats)",
                         x_label=x_label, y_label="AUC", width=1000, height=460, integer_x=True)]
    for model, series in per_model.items():
        charts.append(line_chart(series, title=f"{model}: test AUC vs ε (dark line: non-private, ε = ∞)",
                                 x_label=x_label, y_label="AUC", width=1000, height=380, integer_x=True,
                                 highlight=f"{model} non-private (ε = ∞)"))
    head = ["model", "level", "ε", "AUC mean ± sd", "min – max", "noise multiplier(s)", "max ε spent", "seconds"]
    body = []
    for r in rows:
        z = ", ".join(f"{k} {v:.3g}" for k, v in r["noise_multipliers"].items()) or "–"
        eps = "∞" if r["epsilon"] == "inf" else f"{r['epsilon']:g}"
        spent = "–" if r["max_epsilon_spent"] is None else f"{r['max_epsilon_spent']:.3f}"
        cells = [r["model"], r["level"], eps, f"{r['auc_mean']:.4f} ± {r['auc_sd']:.4f}",
                 f"{r['auc_min']:.4f} – {r['auc_max']:.4f}", z, spent, f"{r['seconds_with_calibration']:.1f}"]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    goals = "".join(
        f"<li>{html.escape(g['model'])} {html.escape(g['level'])}: AUC {g['auc_mean']:.4f} vs non-private "
        f"{g['non_private_auc']:.4f}, gap {g['gap']:+.4f} — <b>{'met' if g['met'] else 'missed'}</b></li>"
        for g in auc["goal_epsilon_1"])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Sampan: AUC vs privacy budget</title>
<style>
body {{ font: 14px/1.5 system-ui, sans-serif; color: #1f2933; background: #f5f7fa; margin: 0; }}
main {{ max-width: 1060px; margin: 0 auto; padding: 24px; }}
.card {{ background: #fff; border: 1px solid #e4e7eb; border-radius: 8px; padding: 12px; margin: 16px 0; }}
svg {{ width: 100%; height: auto; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; background: #fff; }}
th, td {{ border-bottom: 1px solid #e4e7eb; padding: 4px 8px; text-align: left; }}
td:nth-child(n+3) {{ font-variant-numeric: tabular-nums; }}
</style></head><body><main>
<h1>AUC vs privacy budget (ε, δ = 1e-5)</h1>
<p>{html.escape(auc['task'])}. {auc['repeats']} repeat(s) per private setting; {html.escape(auc['note'])}.
DP2 = DP-SGD inside each bank (record-level); DP3 = clipped party updates plus Gaussian noise at the
aggregator (party-level, central mode); DP2+DP3 = both, sharing one budget. Generated {html.escape(date)}
by <code>bench/privacy_bench.py</code>.</p>
<h2>Goal at ε = 1: AUC within {GOAL_GAP} of non-private</h2><ul>{goals}</ul>
{''.join(f'<div class="card">{c}</div>' for c in charts)}
<h2>All runs</h2>
<table><thead><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr></thead>
<tbody>{''.join(body)}</tbody></table>
</main></body></html>
"""
    path.write_text(page, encoding="utf-8")


# --- 2. DP-SGD throughput vs non-private training --------------------------------------------------------
def pooled_training_rows() -> tuple[np.ndarray, np.ndarray]:
    config = run_config("logistic", None, Path(tempfile.gettempdir()))
    X, y = pooled(load_splits(config, SEED), "train")
    scale = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(scale > 1e-12, scale, 1.0), y.astype(np.float64)


def make_model(kind: str) -> Any:
    return model_from_config({"kind": kind, "n_features": 23, **({"hidden": [32]} if kind == "mlp" else {})})


def step_breakdown(kind: str, X: np.ndarray, y: np.ndarray, batch: int) -> dict[str, float]:
    """Microseconds per step for each piece of the current sampan.privacy.dp_sgd_train, timed in isolation,
    next to the non-private step it replaces."""
    from sampan.models.local_training import LocalOptimizer
    from sampan.privacy.dpsgd import poisson_sample  # the current implementation's pieces

    model = make_model(kind)
    params = model.init_params(np.random.default_rng(0))
    rng = secure_generator()
    n, q = len(X), batch / len(X)
    idx = poisson_sample(rng, n, q)
    Xb, yb = X[idx], y[idx]
    noise = GaussianMechanism(DP_CLIP, DP_NOISE * DP_CLIP)
    chunk = 256
    Xc, yc = X[:batch], y[:batch]
    optimizer = LocalOptimizer(params.copy(), TrainConfig(batch_size=batch, learning_rate=TP_LR), None)
    work = params.copy()
    grad = np.zeros_like(params)
    pieces = {
        "DP: Poisson sample (binomial size + choice without replacement)": lambda: poisson_sample(rng, n, q),
        "DP: gather X[idx], y[idx] (random rows)": lambda: (X[idx], y[idx]),
        "DP: clipped_grad_sum (ghost norms, clipped sum, loss)":
            lambda: model.clipped_grad_sum(params, Xb, yb, DP_CLIP),
        "DP: Gaussian noise (drawn in chunks of 256 steps, per step)":
            lambda: noise.noise((chunk, len(params)), rng=rng),
        "both: optimizer step (L2 + SGD update)": lambda: optimizer.step(work, grad.copy()),
        "non-private: loss_and_grad on a contiguous slice": lambda: model.loss_and_grad(params, Xc, yc),
        "non-private: per-epoch permutation + copy, per step":
            lambda: (lambda o: (X[o], y[o]))(np.random.default_rng(0).permutation(n)),
    }
    per_call_divisor = {"DP: Gaussian noise (drawn in chunks of 256 steps, per step)": chunk,
                        "non-private: per-epoch permutation + copy, per step": -(-n // batch)}
    out = {}
    for name, fn in pieces.items():
        number = 20 if name in per_call_divisor else 300
        out[name] = min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6 / per_call_divisor.get(name, 1)
    return out


def profile_dp_sgd(kind: str, X: np.ndarray, y: np.ndarray, batch: int) -> list[dict[str, Any]]:
    model = make_model(kind)
    params = model.init_params(np.random.default_rng(0))
    profiler = cProfile.Profile()
    profiler.enable()
    dp_sgd_train(model, params, X, y, TrainConfig(epochs=1, batch_size=batch, learning_rate=TP_LR),
                 DPSGDConfig(DP_NOISE, DP_CLIP))
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": ncalls,
                     "tottime_share": tottime / total, "cumtime_share": cumtime / total})
    return sorted(rows, key=lambda r: -r["tottime_share"])[:8]


def throughput(repeats: int, epochs: int = 3) -> dict[str, Any]:
    X, y = pooled_training_rows()
    rows = []
    for kind in ("logistic", "mlp"):
        model = make_model(kind)
        params = model.init_params(np.random.default_rng(0))
        for batch in THROUGHPUT_BATCHES:
            cfg = TrainConfig(epochs=epochs, batch_size=batch, learning_rate=TP_LR)
            plain_rates, dp_rates = [], []
            for r in range(repeats):  # interleaved: both see the same machine load
                t0 = time.perf_counter()
                res = train(model, params, X, y, cfg, np.random.default_rng(r))
                plain_rates.append(res.examples / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                dp = dp_sgd_train(model, params, X, y, cfg, DPSGDConfig(DP_NOISE, DP_CLIP))
                dp_rates.append(dp.result.examples / (time.perf_counter() - t0))
            row: dict[str, Any] = {
                "model": kind, "batch_size": batch, "rows": len(X), "epochs": epochs,
                "non_private_examples_per_s": max(plain_rates), "dp_sgd_examples_per_s": max(dp_rates),
                "ratio": max(dp_rates) / max(plain_rates),
                "ratio_of_medians": statistics.median(dp_rates) / statistics.median(plain_rates),
                "non_private_all": plain_rates, "dp_sgd_all": dp_rates, "goal_met": None}
            row["goal_met"] = row["ratio"] >= 0.5
            if row["ratio"] < 0.5:
                row["step_microseconds"] = step_breakdown(kind, X, y, batch)
                row["cprofile_top_tottime"] = profile_dp_sgd(kind, X, y, batch)
            rows.append(row)
            print(f"{kind:8s} batch {batch:3d}: non-private {row['non_private_examples_per_s']:,.0f} ex/s, "
                  f"DP-SGD {row['dp_sgd_examples_per_s']:,.0f} ex/s, ratio {row['ratio']:.2f} "
                  f"(medians {row['ratio_of_medians']:.2f}) goal 0.5 {'met' if row['goal_met'] else 'MISSED'}",
                  flush=True)
            for name, us in row.get("step_microseconds", {}).items():
                print(f"    {us:8.1f} us/step  {name}", flush=True)
    return {"noise_multiplier": DP_NOISE, "max_grad_norm": DP_CLIP, "learning_rate": TP_LR,
            "measure": "examples/s = examples processed / wall time, max over interleaved repeats (= min time)",
            "repeats": repeats, "rows": rows}


# --- 3. Opacus ------------------------------------------------------------------------------------------
OPACUS_CHILD = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
threads, repeats = int(sys.argv[1]), int(sys.argv[2])
batches = [int(b) for b in sys.argv[3].split(",")]
X_path, y_path = sys.argv[4], sys.argv[5]
noise, clip, lr = float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
import numpy as np
import torch
from torch import nn
import opacus
from opacus import PrivacyEngine
torch.set_num_threads(threads)
torch.manual_seed(0)
from sampan.horizontal import TrainConfig
from sampan.models import model_from_config
from sampan.privacy import DPSGDConfig, dp_sgd_train
X = np.load(X_path); y = np.load(y_path)
Xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
data = torch.utils.data.TensorDataset(Xt, yt)
model_np = model_from_config({"kind": "mlp", "n_features": X.shape[1], "hidden": [32]})
params = model_np.init_params(np.random.default_rng(0))

def make_opacus(batch, mode):
    net = nn.Sequential(nn.Linear(X.shape[1], 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(data, batch_size=batch)
    crit = nn.BCEWithLogitsLoss()
    engine = PrivacyEngine(accountant="rdp")
    if mode == "ghost":
        net, opt, crit, loader = engine.make_private(module=net, optimizer=opt, criterion=crit, data_loader=loader,
                                                     noise_multiplier=noise, max_grad_norm=clip,
                                                     poisson_sampling=True, grad_sample_mode="ghost")
    else:
        net, opt, loader = engine.make_private(module=net, optimizer=opt, data_loader=loader, noise_multiplier=noise,
                                               max_grad_norm=clip, poisson_sampling=True)
    return net, opt, loader, crit

def _opacus_pass(net, opt, crit, batches):
    examples = 0
    t0 = time.perf_counter()
    for xb, yb in batches:
        opt.zero_grad()
        loss = crit(net(xb).squeeze(-1), yb)
        loss.backward()
        opt.step()
        examples += len(yb)
    return examples / (time.perf_counter() - t0)

def opacus_epoch(net, opt, loader, crit):
    return _opacus_pass(net, opt, crit, loader)

def opacus_epoch_tensor_batches(net, opt, loader, crit):
    # Opacus's own Poisson batch sampler, but rows gathered by tensor indexing instead of the
    # DataLoader's per-row __getitem__ + collate: the cheapest way we found to feed Opacus.
    def gathered():
        for idx in loader.batch_sampler:
            idx = torch.as_tensor(idx, dtype=torch.long)
            yield Xt[idx], yt[idx]
    return _opacus_pass(net, opt, crit, gathered())

def sampan_epoch(batch):
    cfg = TrainConfig(epochs=1, batch_size=batch, learning_rate=lr)
    t0 = time.perf_counter()
    res = dp_sgd_train(model_np, params, X, y, cfg, DPSGDConfig(noise, clip))
    return res.result.examples / (time.perf_counter() - t0)

rows = []
for batch in batches:
    setups = {mode: make_opacus(batch, mode) for mode in ("hooks", "ghost")}
    rates = {"sampan": [], "hooks": [], "ghost": [], "hooks_tensor_batches": []}
    for _ in range(repeats):  # interleaved
        rates["sampan"].append(sampan_epoch(batch))
        for mode, setup in setups.items():
            rates[mode].append(opacus_epoch(*setup))
        rates["hooks_tensor_batches"].append(opacus_epoch_tensor_batches(*setups["hooks"]))
    best = {k: max(v) for k, v in rates.items()}
    rows.append({"batch_size": batch, "threads": threads, "sampan_examples_per_s": best["sampan"],
                 "opacus_examples_per_s": best["hooks"], "opacus_ghost_examples_per_s": best["ghost"],
                 "opacus_tensor_batches_examples_per_s": best["hooks_tensor_batches"],
                 "speedup": best["sampan"] / best["hooks"], "speedup_vs_ghost": best["sampan"] / best["ghost"],
                 "speedup_vs_tensor_batches": best["sampan"] / best["hooks_tensor_batches"],
                 "speedup_vs_fastest_opacus": best["sampan"] / max(best["hooks"], best["ghost"],
                                                                    best["hooks_tensor_batches"]),
                 "speedup_of_medians": float(np.median(rates["sampan"]) / np.median(rates["hooks"])),
                 "all": rates})
print(json.dumps({"torch": torch.__version__, "opacus": opacus.__version__, "numpy": np.__version__,
                  "torch_threads": torch.get_num_threads(), "rows": rows}))
"""


def opacus_python() -> tuple[str | None, str]:
    """An interpreter with torch and opacus: this one, else .venv-bench's."""
    candidates = [sys.executable, str(ROOT / ".venv-bench" / "bin" / "python")]
    reasons = []
    for python in candidates:
        if not Path(python).exists():
            reasons.append(f"{python}: not found")
            continue
        probe = subprocess.run([python, "-c", "import torch, opacus, sampan"], capture_output=True, text=True)
        if probe.returncode == 0:
            return python, ""
        last_line = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "import failed"
        reasons.append(f"{python}: {last_line}")
    return None, "; ".join(reasons)


def opacus_comparison(repeats: int) -> dict[str, Any]:
    python, why = opacus_python()
    if python is None:
        print(f"Opacus comparison skipped: {why}", flush=True)
        return {"skipped": why}
    X, y = pooled_training_rows()
    out: dict[str, Any] = {"python": python, "model": "MLP 23-32-1 (Linear-ReLU-Linear), BCEWithLogits, SGD",
                           "noise_multiplier": DP_NOISE, "max_grad_norm": DP_CLIP, "learning_rate": TP_LR,
                           "rows_per_epoch": len(X), "dtype": "Opacus float32 (its default), Sampan float64",
                           "measure": "examples/s over one epoch, max over interleaved repeats", "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        x_path, y_path = Path(tmp) / "X.npy", Path(tmp) / "y.npy"
        np.save(x_path, X, allow_pickle=False)
        np.save(y_path, y, allow_pickle=False)
        for threads in (1, 2):
            env = {**os.environ, **{v: str(threads) for v in (
                "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}}
            result = subprocess.run(
                [python, "-c", OPACUS_CHILD, str(threads), str(repeats), ",".join(map(str, THROUGHPUT_BATCHES)),
                 str(x_path), str(y_path), str(DP_NOISE), str(DP_CLIP), str(TP_LR)],
                capture_output=True, text=True, env=env)
            if result.returncode != 0:
                out["runs"].append({"threads": threads, "error": result.stderr.strip()[-2000:]})
                print(f"Opacus child ({threads} threads) failed:\n{result.stderr[-2000:]}", flush=True)
                continue
            child = json.loads(result.stdout.strip().splitlines()[-1])
            out.update({k: child[k] for k in ("torch", "opacus")})
            out["runs"].append({"threads": threads, "torch_threads": child["torch_threads"], "rows": child["rows"]})
            for r in child["rows"]:
                print(f"MLP batch {r['batch_size']:3d}, {threads} thread(s): Sampan {r['sampan_examples_per_s']:,.0f} "
                      f"ex/s, Opacus {child['opacus']} {r['opacus_examples_per_s']:,.0f} ex/s (ghost clipping "
                      f"{r['opacus_ghost_examples_per_s']:,.0f}, tensor-indexed batches "
                      f"{r['opacus_tensor_batches_examples_per_s']:,.0f}) -> Sampan {r['speedup']:.1f}x "
                      f"({r['speedup_vs_fastest_opacus']:.1f}x vs the fastest Opacus variant; medians "
                      f"{r['speedup_of_medians']:.1f}x) goal 2x "
                      f"{'met' if r['speedup_vs_fastest_opacus'] >= 2 else 'MISSED'}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["auc", "throughput", "opacus"], default=None)
    parser.add_argument("--quick", action="store_true", help="epsilon 1 and 8 only, 1 repeat; a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="private runs per setting (default 5)")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's per-order convergence chatter
    date = datetime.now(UTC).isoformat(timespec="seconds")
    results: dict[str, Any] = {"date": date, "machine": machine(), "quick": args.quick,
                               "source_sha256": source_fingerprint()}
    started = time.perf_counter()
    if args.only in (None, "auc"):
        repeats = args.repeats or (1 if args.quick else 5)
        results["auc_vs_epsilon"] = auc = auc_vs_epsilon(QUICK_EPSILONS if args.quick else EPSILONS, repeats)
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_html(auc, RESULTS / "privacy_auc_vs_epsilon.html", date)
        for g in auc["goal_epsilon_1"]:
            print(f"goal eps=1 {g['model']:8s} {g['level']:8s} AUC {g['auc_mean']:.4f} vs non-private "
                  f"{g['non_private_auc']:.4f}: gap {g['gap']:+.4f} -> {'met' if g['met'] else 'missed'}", flush=True)
        print(f"AUC part: {auc['total_seconds']:.0f}s; wrote {RESULTS / 'privacy_auc_vs_epsilon.html'}", flush=True)
    if args.only in (None, "throughput"):
        results["throughput"] = throughput(3 if args.quick else 7)
    if args.only in (None, "opacus"):
        results["opacus"] = opacus_comparison(2 if args.quick else 5)
    results["total_seconds"] = time.perf_counter() - started
    if source_fingerprint() != results["source_sha256"]:
        results["warning"] = "measured source files changed during the run: re-run for a consistent snapshot"
        print(f"WARNING: {results['warning']}", flush=True)
    out = RESULTS / "privacy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.pop("warning", None)  # belongs to the run that wrote it
    out.write_text(json.dumps({**previous, **results}, indent=2))
    print(f"total {results['total_seconds']:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
