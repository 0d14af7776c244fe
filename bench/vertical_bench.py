"""Secure vertical LR and joint scoring: accuracy, epoch-time ratios, scale, latency (issue 4).

    .venv/bin/python bench/vertical_bench.py            # everything (needs ../shared/data for Taiwan)
    .venv/bin/python bench/vertical_bench.py --quick    # smaller scale test

Prints ratios measured side by side in one run; writes bench/results/vertical.json.
1. Taiwan default split vertically (bank: LIMIT_BAL, demographics, PAY_*; partner: BILL_AMT*, PAY_AMT*):
   test AUC of secure vertical LR vs plaintext LR on the pooled columns (same optimiser, same rows,
   exact sigmoid) vs the bank's columns alone.
2. Epoch time, interleaved repeats: secure vertical LR vs the insecure plaintext vertical protocol on the
   same parties and transport, and vs centralised NumPy minibatch LR.
3. Scale: 100k rows x (30 bank + 300 partner) features, one epoch (setup timed apart).
4. Joint scoring latency for one application, three parties in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sampan.data import make_sme_consortium
from sampan.data.public import load_taiwan_default, shared_data_dir
from sampan.data.table import PartyData
from sampan.metrics import roc_auc
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.multiprocess import MultiprocessTransport
from sampan.vertical.model import LocalScaler
from sampan.vertical.party import fit_logistic
from sampan.vertical.plain_lr import train_plain_vertical_lr
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig

RESULTS = Path(__file__).parent / "results"


def _split_columns(data: PartyData, groups: dict[str, list[str]], label_holder: str) -> dict[str, PartyData]:
    out = {}
    for party, cols in groups.items():
        idx = [data.feature_names.index(c) for c in cols]
        out[party] = PartyData(party, data.ids, data.X[:, idx], data.y if party == label_holder else None, cols)
    return out


def _session(tables: dict[str, PartyData], *, align: bool = True, pinned: bool = False):  # type: ignore[no-untyped-def]
    transport, parties = build_inprocess_vertical(tables, with_baselines=True)  # prices plr.* (insecure baseline)
    for party in parties.values():  # timing runs many one-epoch trainings in one run (parties cap it at 2 by default)
        if hasattr(party.lr, "runs"):
            party.lr.runs.max_instances = 1000
    if pinned:  # every party in its own process, as separate organisations would be
        transport = MultiprocessTransport({n: p.app for n, p in parties.items()}, pinned=True)
    session = VerticalSession(transport, label_holder="bank", partners=[p for p in tables if p != "bank"])
    session.connect()
    if align:
        session.align()
    else:  # the same ids in the same order everywhere (synthetic scale test): alignment is the identity
        n = len(next(iter(tables.values())))
        for p in parties.values():
            p.psi.aligned_rows = np.arange(n)
        session.n_aligned = n
    return session, parties, transport


def taiwan_tables() -> dict[str, PartyData]:
    """Taiwan default split by columns: bank = limits, demographics, repayment status and the label;
    partner = bill and payment amounts."""
    root = shared_data_dir()
    if root is None:
        raise SystemExit("Taiwan data not found: put ../shared/data beside the checkout or set SAMPAN_SHARED_DATA")
    data = load_taiwan_default(root / "taiwan_default")
    bank_cols = [c for c in data.feature_names if not c.startswith(("BILL_AMT", "PAY_AMT"))]
    partner_cols = [c for c in data.feature_names if c.startswith(("BILL_AMT", "PAY_AMT"))]
    return _split_columns(data, {"bank": bank_cols, "partner": partner_cols}, "bank")


def taiwan_accuracy(config: VerticalLRConfig, seed: int) -> dict[str, float]:
    tables = taiwan_tables()
    session, parties, _ = _session(tables)
    splits = Splits.random(session.n_aligned, seed=seed)
    t0 = time.perf_counter()
    result = session.train(splits, config, seed=seed)
    train_s = time.perf_counter() - t0
    secure = session.evaluate(splits.test)
    bank_only = session.bank_only(splits, config, seed=seed)
    # Pooled plaintext LR: all columns in one place (simulation only), same rows in the aligned order.
    rows = {p: parties[p].psi.aligned_rows for p in parties}
    X = np.hstack([tables[p].X[rows[p]] for p in ("bank", "partner")])
    y = tables["bank"].y[rows["bank"]].astype(float)
    scaler = LocalScaler.fit(X[splits.train])
    w = fit_logistic(scaler.transform(X[splits.train]), y[splits.train], scaler.transform(X[splits.val]),
                     y[splits.val], lr=config.learning_rate, l2=config.l2, epochs=config.epochs,
                     batch_size=config.batch_size, seed=seed, patience=config.patience)
    pooled_auc = roc_auc(y[splits.test],
                         np.hstack([scaler.transform(X[splits.test]), np.ones((len(splits.test), 1))]) @ w)
    return {"n_aligned": session.n_aligned, "psi_seconds": session.alignment.seconds,
            "secure_auc": secure["auc"], "pooled_auc": pooled_auc, "bank_only_auc": bank_only["auc"],
            "secure_minus_pooled": secure["auc"] - pooled_auc, "gain_over_bank_only": secure["auc"] - bank_only["auc"],
            "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "train_seconds": train_s}


def epoch_ratio(config: VerticalLRConfig, repeats: int, seed: int, *, pinned: bool = False) -> dict[str, float]:
    """Interleaved: secure epoch, plaintext-protocol epoch, centralised epoch; min and median of each.

    pinned=False: parties in this process, one after another; pinned=True: one process per party.
    """
    tables = taiwan_tables()
    session, parties, transport = _session(tables, pinned=pinned)
    splits = Splits.random(session.n_aligned, seed=seed)
    one_epoch = VerticalLRConfig(epochs=1, batch_size=config.batch_size, learning_rate=config.learning_rate,
                                 l2=config.l2, patience=1)
    # The same epoch with each party seeing its plaintext gradient (the mode before shared weights).
    plain_gradient = dataclasses.replace(one_epoch, shared_weights=False)
    # Timing only: the centralised copy need not follow the aligned order (pinned parties keep it to themselves).
    X = np.hstack([tables[p].X for p in ("bank", "partner")])[splits.train]
    Xs = np.hstack([LocalScaler.fit(X).transform(X), np.ones((len(X), 1))])
    y = tables["bank"].y[splits.train].astype(float)
    times: dict[str, list[float]] = {"secure": [], "secure_with_dealing": [], "secure_plaintext_gradient": [],
                                     "plain_vertical": [], "centralised": []}
    for r in range(repeats):
        res = session.train(splits, one_epoch, seed=r)
        times["secure"].append(res.epoch_seconds[0])
        times["secure_with_dealing"].append(res.epoch_seconds[0] + res.dealer_seconds[0])
        times["secure_plaintext_gradient"].append(session.train(splits, plain_gradient, seed=r).epoch_seconds[0])
        times["plain_vertical"].append(train_plain_vertical_lr(transport, session.run_id, session.roles, splits.train,
                                                               one_epoch, epochs=1, seed=r)[0])
        t0 = time.perf_counter()
        w = np.zeros(Xs.shape[1])
        order = np.random.default_rng(r).permutation(len(y))
        for lo in range(0, len(y), config.batch_size):
            i = order[lo:lo + config.batch_size]
            res_ = 1 / (1 + np.exp(-(Xs[i] @ w))) - y[i]
            w -= config.learning_rate * (Xs[i].T @ res_ / len(i) + config.l2 * w)
        times["centralised"].append(time.perf_counter() - t0)
    out = {f"{k}_min_s": min(v) for k, v in times.items()} | {f"{k}_median_s": statistics.median(v)
                                                              for k, v in times.items()}
    out["secure_over_plain_vertical"] = out["secure_min_s"] / out["plain_vertical_min_s"]
    out["secure_with_dealing_over_plain_vertical"] = out["secure_with_dealing_min_s"] / out["plain_vertical_min_s"]
    out["secure_over_centralised"] = out["secure_min_s"] / out["centralised_min_s"]
    out["shared_weights_over_plaintext_gradient"] = out["secure_min_s"] / out["secure_plaintext_gradient_min_s"]
    out["rows"] = len(splits.train)
    out["batch_size"] = config.batch_size
    out["transport"] = "one process per party" if pinned else "in-process, sequential"
    if pinned:
        transport.close()
    return out


def scale(n_rows: int, bank_features: int, partner_features: int, batch_size: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"BR{i:08d}" for i in range(n_rows)], dtype=object)
    Xb = rng.standard_normal((n_rows, bank_features))
    Xp = rng.standard_normal((n_rows, partner_features))
    logit = -2 + Xb[:, :5].sum(axis=1) * 0.3 + Xp[:, :20].sum(axis=1) * 0.1
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    tables = {"bank": PartyData("bank", ids, Xb, y, [f"b{i}" for i in range(bank_features)]),
              "partner": PartyData("partner", ids, Xp, None, [f"p{i}" for i in range(partner_features)])}
    session, _, transport = _session(tables, align=False)
    n_val = min(2000, n_rows // 10)  # validation rows are disjoint from training rows (the holders refuse overlap)
    splits = Splits(np.arange(n_val, n_rows), np.arange(n_val), np.arange(0))
    config = VerticalLRConfig(epochs=1, batch_size=batch_size, patience=1)
    t0 = time.perf_counter()
    result = session.train(splits, config, seed=seed)
    total = time.perf_counter() - t0
    plain = train_plain_vertical_lr(transport, session.run_id, session.roles, splits.train, config, epochs=1)[0]
    Xs = np.hstack([Xb, Xp, np.ones((n_rows, 1))])
    t0 = time.perf_counter()
    w, yf = np.zeros(Xs.shape[1]), y.astype(float)
    order = rng.permutation(n_rows)
    for lo in range(0, n_rows, batch_size):
        i = order[lo:lo + batch_size]
        w -= 0.1 * (Xs[i].T @ (1 / (1 + np.exp(-(Xs[i] @ w))) - yf[i]) / len(i))
    central = time.perf_counter() - t0
    return {"rows": n_rows, "bank_features": bank_features, "partner_features": partner_features,
            "batch_size": batch_size, "epoch_seconds": result.epoch_seconds[0],
            "dealer_seconds": result.dealer_seconds[0],
            "setup_and_validation_seconds": total - result.epoch_seconds[0],
            "plain_vertical_epoch_seconds": plain, "centralised_epoch_seconds": central,
            "secure_over_plain_vertical": result.epoch_seconds[0] / plain,
            "secure_over_centralised": result.epoch_seconds[0] / central}


def scoring_latency(n: int, seed: int) -> dict[str, float]:
    tables = make_sme_consortium(20000, seed=seed).vertical
    session, parties, _ = _session(tables)
    session.train(Splits.random(session.n_aligned, seed=seed), VerticalLRConfig(epochs=3), seed=seed)
    ids = [str(i) for i in tables["bank"].ids[:n]]
    session.score(ids[:1])  # warm the id index
    walls = []
    for applicant in ids:
        t0 = time.perf_counter()
        session.score([applicant])
        walls.append(time.perf_counter() - t0)
    return {"applications": n, "median_ms": 1000 * statistics.median(walls),
            "p95_ms": 1000 * float(np.percentile(walls, 95)),
            "max_ms": 1000 * max(walls), "parties": len(tables)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    config = VerticalLRConfig()
    report: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {sys.version.split()[0]}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "config": config.__dict__}
    print("1. Taiwan, vertical split: accuracy", flush=True)
    report["taiwan"] = taiwan_accuracy(config, args.seed)
    print(json.dumps(report["taiwan"], indent=2), flush=True)
    print("2. Epoch time ratios (interleaved repeats)", flush=True)
    report["epoch_time"] = epoch_ratio(config, 3 if args.quick else args.repeats, args.seed)
    print(json.dumps(report["epoch_time"], indent=2), flush=True)
    report["epoch_time_pinned"] = epoch_ratio(config, 3 if args.quick else args.repeats, args.seed, pinned=True)
    print(json.dumps(report["epoch_time_pinned"], indent=2), flush=True)
    print("3. Scale: one epoch", flush=True)
    report["scale"] = scale(10_000 if args.quick else 100_000, 30, 300, 1280, args.seed)  # batch >= 4 x 300 columns
    print(json.dumps(report["scale"], indent=2), flush=True)
    print("4. Joint scoring latency", flush=True)
    report["scoring"] = scoring_latency(50 if args.quick else 200, args.seed)
    print(json.dumps(report["scoring"], indent=2), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vertical.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
