"""Each bank alone vs the consortium (issue 13 item 6), on the shared public credit datasets.

A horizontal logistic run over banks of unequal size (`partition = "quantity"`) with `[bank_alone]`: each bank
trains a local-only model on its own training rows and scores it and the consortium model on its own holdout,
at the bank (only two histograms leave). The same run without `[bank_alone]` is timed beside it, so the table
shows what the comparison costs as well as what each bank gains. Run from the repository root:
    .venv/bin/python bench/bank_alone_bench.py [--datasets taiwan german] [--parties 4] [--rounds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from sampan.config import parse_config
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

DATA = Path("/work/shared/data")


def _run(dataset: str, args: argparse.Namespace, store: Store, report_dir: str, alone: bool) -> tuple[Any, float]:
    config: dict[str, Any] = {
        "run": {"name": f"{dataset}-alone-{alone}", "seed": args.seed, "rounds": args.rounds, "report_dir": report_dir},
        "source": {"kind": dataset, "path": str(DATA), "n_parties": args.parties, "partition": "quantity",
                   "alpha": 1.0},
        "training": {"learning_rate": 0.1, "batch_size": 64}}
    if alone:
        config["bank_alone"] = {"epochs": args.epochs}
    started = time.perf_counter()
    finished = start_run(parse_config(config), store)
    return finished, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["taiwan", "german"])
    parser.add_argument("--parties", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/bench.db")
        for dataset in args.datasets:
            _run(dataset, argparse.Namespace(**{**vars(args), "rounds": 1}), store, tmp, alone=False)  # warm-up
            plain, plain_s = _run(dataset, args, store, tmp, alone=False)
            finished, alone_s = _run(dataset, args, store, tmp, alone=True)
            banks = finished.result.info["bank_alone"]["banks"]
            print(f"\n{dataset}: {args.parties} banks (quantity skew), {args.rounds} rounds, local-only "
                  f"{args.epochs} epochs, seed {args.seed}; pooled-holdout AUC {plain.final_metrics['auc']:.4f}; "
                  f"run {plain_s:.1f} s without the comparison, {alone_s:.1f} s with it "
                  f"({alone_s / plain_s:.2f}x)")
            print(f"{'bank':<12}{'holdout':>9}{'AUC alone':>11}{'AUC consortium':>16}{'gain':>9}")
            for bank, row in banks.items():
                local, joint = row["local_auc"], row["consortium_auc"]
                gain = f"{row['gain']:+.4f}" if row["gain"] is not None else "n/a"
                print(f"{bank:<12}{row['n_holdout']:>9}{local if local is None else f'{local:.4f}':>11}"
                      f"{joint if joint is None else f'{joint:.4f}':>16}{gain:>9}")


if __name__ == "__main__":
    main()
