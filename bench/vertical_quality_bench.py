"""Issue 13 (vertical quality): reproducible held-out rows, and scorecards a validator accepts, on the Taiwan data.

Runs the vertical workflow (bank: repayment history and limits; card issuer: bill and payment amounts, as in
examples/taiwan_vertical.toml) several times in one process, side by side:

* the same files and seed twice, and another seed: test AUC of the secure LR and of the bank-alone LR, and
  whether the held-out customers (the bank's exported ids) are the same;
* the scorecard with `[vertical.scorecard] monotone = false` and `true`: features whose WOE is not monotone or
  whose points rise with risk (flagged), against none left (the wrong-signed ones zeroed), and the AUC cost.

    .venv/bin/python bench/vertical_quality_bench.py [--rows 12000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path
from typing import Any

from sampan.config import parse_config
from sampan.data.public import load_taiwan_default, shared_data_dir
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store


def write_parties(folder: Path, rows: int) -> dict[str, tuple[Path, list[str]]]:
    root = shared_data_dir()
    if root is None:
        raise SystemExit("../shared/data not found (or set SAMPAN_SHARED_DATA)")
    data = load_taiwan_default(root / "taiwan_default")
    n = min(rows, len(data))
    groups = {"bank": [c for c in data.feature_names if not c.startswith(("BILL_AMT", "PAY_AMT"))],
              "card_issuer": [c for c in data.feature_names if c.startswith(("BILL_AMT", "PAY_AMT"))]}
    out = {}
    for name, cols in groups.items():
        idx = [data.feature_names.index(c) for c in cols]
        path = folder / f"{name}.csv"
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ID", *cols, *(["default"] if name == "bank" else [])])
            for i in range(n):
                w.writerow([data.ids[i], *[repr(float(v)) for v in data.X[i, idx]],
                            *([int(data.y[i])] if name == "bank" else [])])
        out[name] = (path, cols)
    return out


def run(parties: dict[str, tuple[Path, list[str]]], *, seed: int, monotone: bool, epochs: int) -> dict[str, Any]:
    features = [c for _, cols in parties.values() for c in cols]
    config = parse_config({
        "run": {"name": "taiwan-vq", "workflow": "vertical", "seed": seed},
        "schema": {"id": "ID", "label": "default", "features": features},
        "vertical": {"label_holder": "bank", "models": ["lr", "scorecard"], "lr": {"epochs": epochs},
                     "scorecard": {"monotone": monotone}},
        "parties": [{"name": n, "path": str(p), "features": cols} for n, (p, cols) in parties.items()],
    }, source="bench")
    store = Store.open("sqlite://")
    start = time.perf_counter()
    finished = start_run(config, store)
    seconds = time.perf_counter() - start
    outcome = finished.result.outcome
    holdout = [m for m in store.models_for_run(finished.run_id) if m.name.endswith("-holdout:bank")]
    card = outcome["scorecard"]
    flagged = sorted({(r["party"], r["feature"]) for r in card if r.get("flag")})
    zeroed = sorted({(r["party"], r["feature"]) for r in card if "set to 0" in str(r.get("flag"))})
    return {"seconds": seconds, "lr": outcome["joint"]["auc"], "alone": outcome["bank_only"]["auc"],
            "card": outcome["comparison"]["vertical scorecard (WOE + secure LR)"]["auc"],
            "test_ids": set(holdout[-1].meta["ids"]) if holdout else set(), "n_test": outcome["joint"]["n"],
            "features": len({(r["party"], r["feature"]) for r in card if r["woe"] is not None}),
            "flagged": flagged, "zeroed": zeroed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        parties = write_parties(Path(tmp), args.rows)
        a = run(parties, seed=1, monotone=True, epochs=args.epochs)
        b = run(parties, seed=1, monotone=True, epochs=args.epochs)
        c = run(parties, seed=2, monotone=True, epochs=args.epochs)
        off = run(parties, seed=1, monotone=False, epochs=args.epochs)
    print(f"Taiwan default, first {args.rows} rows, bank + card issuer, secure LR {args.epochs} epochs")
    print("run                     test rows  same test ids as #1  AUC secure LR  AUC bank alone  AUC scorecard  s")
    for label, r in (("#1 seed 1", a), ("#2 seed 1 (again)", b), ("#3 seed 2", c), ("#4 seed 1, monotone off", off)):
        print(f"{label:<24}{r['n_test']:>9}  {str(r['test_ids'] == a['test_ids']):>19}  {r['lr']:>13.4f}  "
              f"{r['alone']:>14.4f}  {r['card']:>13.4f}  {r['seconds']:.0f}")
    print(f"scorecard features: {a['features']}; monotone off: {len(off['flagged'])} flagged "
          f"({', '.join(f for _, f in off['flagged']) or 'none'}); monotone on: {len(a['flagged'])} flagged, of which "
          f"{len(a['zeroed'])} zeroed wrong-signed ({', '.join(f for _, f in a['zeroed']) or 'none'})")
    print(f"AUC |#1 - #2| = {abs(a['lr'] - b['lr']):.4f} (secure LR), {abs(a['alone'] - b['alone']):.4f} (bank alone); "
          f"scorecard AUC monotone on - off = {a['card'] - off['card']:+.4f}")


if __name__ == "__main__":
    main()
