"""The issue-20 QR benchmark: decode rate per distortion, copy detection per verifier / printer / copy kind,
federated vs central vs local-only training, distributed verification timing, quishing precision/recall.

    nice -n 5 .venv/bin/python bench/qr_anticounterfeit.py --quick   # <= 2 min, smoke-sized
    nice -n 5 .venv/bin/python bench/qr_anticounterfeit.py           # <= 15 min on 2 shared cores

One run measures everything side by side on the same simulated channel (seeded: `--seed`); writes JSON
(bench/results/qr_anticounterfeit[_quick].json) and, on a full run, the markdown snippet
(bench/results/qr_benchmark_snippet.md unless `--snippet`). The copy-detection figures hold for the simulated
print-and-capture channel only, not for real printers and phones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _qr_cdp import (  # noqa: E402
    ATTACKER_PRINTERS,
    build_test_set,
    distributed_check,
    rate_all,
    scorers,
    train_fl,
    train_originals,
)
from _qr_channel import decode_rates, quishing_scores  # noqa: E402
from _qr_report import ROOT, machine, tables, write_json, write_snippet  # noqa: E402


@dataclass(frozen=True)
class QrBenchConfig:
    """Sizes of one run (full defaults sized for <= 15 min on 2 shared cores)."""

    seed: int = 2026
    test_originals: int = 300
    copied: int = 40
    train_originals: int = 90
    estimator_codes: int = 6
    decode_per_condition: int = 10
    fl_items_per_site: int = 30
    fl_rounds: int = 20
    distributed_scans: int = 10

    @classmethod
    def quick(cls) -> QrBenchConfig:
        return cls(test_originals=20, copied=5, train_originals=12, estimator_codes=3, decode_per_condition=2,
                   fl_items_per_site=6, fl_rounds=4, distributed_scans=2)


def _issuer_text(seed: int) -> tuple[str, bytes]:
    """A real signed item code (fresh issuer key) and the CDP key (seeded, for a reproducible run)."""
    import numpy as np

    from sampan.qr.keys import generate_issuer_key
    from sampan.qr.payload import ItemCode, sign

    key = generate_issuer_key("bench-issuer")
    text = sign(ItemCode("SN-000000000001", "bench-issuer", dt.date(2030, 12, 31), "cdp1"), key)
    cdp_key = np.random.default_rng(seed).bytes(32)
    return text, cdp_key


def run_bench(cfg: QrBenchConfig, work: Path, log: Any = print) -> dict[str, Any]:
    """Every measurement of the benchmark; see the module docstring."""
    from sampan.qr.cdp import layout_for
    from sampan.qr.channel import rng_for

    start = time.perf_counter()
    text, key = _issuer_text(cfg.seed)
    layout = layout_for(text)
    rng = rng_for(cfg.seed)
    results: dict[str, Any] = {"config": {**asdict(cfg), "layout": asdict(layout), "text_chars": len(text),
                                          "attacker_printers": list(ATTACKER_PRINTERS)}}
    t0 = time.perf_counter()
    results["quishing"] = quishing_scores()
    log(f"quishing done ({time.perf_counter() - t0:.0f} s)")
    results["decode"] = decode_rates(text, key, layout, per_condition=cfg.decode_per_condition, rng=rng)
    log(f"decode rates done ({results['decode']['seconds']:.0f} s)")
    t0 = time.perf_counter()
    train, train_serials, lost = train_originals(text, key, layout, cfg.train_originals, rng)
    train_seconds = time.perf_counter() - t0
    log(f"training originals done ({train_seconds:.0f} s)")
    models, fl = train_fl(text, key, layout, items_per_site=cfg.fl_items_per_site, work_dir=work, seed=cfg.seed,
                          rng=rng, rounds=cfg.fl_rounds)
    results["fl"] = fl
    log(f"FL sites and training done ({sum(fl['seconds'].values()):.0f} s)")
    ts = build_test_set(text, key, layout, n_originals=cfg.test_originals, n_copied=cfg.copied, rng=rng,
                        estimator_codes=cfg.estimator_codes, tick=log)
    log(f"test set done ({ts.seconds['test_set']:.0f} s)")
    cd = rate_all(ts, scorers(key, train, train_serials, models))
    cd["counts"] = {"test_originals": len(ts.originals), "copies_per_cell": cfg.copied,
                    "train_originals": len(train), "train_undecoded": lost, "undecoded": ts.undecoded}
    cd["seconds"] = {**ts.seconds, "train_originals": train_seconds}
    results["copy_detection"] = cd
    results["distributed"] = distributed_check(key, models["federated"], ts, scans=cfg.distributed_scans)
    results["seconds_total"] = time.perf_counter() - start
    results["machine"] = machine()
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (<= 2 min)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--test-originals", type=int, help="test originals (>= 100 for an empirical P_fa 1%%)")
    parser.add_argument("--copied", type=int, help="originals copied per printer and copy kind")
    parser.add_argument("--out", type=Path, help="JSON (default bench/results/qr_anticounterfeit[_quick].json)")
    parser.add_argument("--snippet", type=Path, help="markdown snippet (default bench/results/"
                        "qr_benchmark_snippet.md on a full run, none on --quick)")
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    cfg = QrBenchConfig.quick() if args.quick else QrBenchConfig()
    cfg = replace(cfg, seed=args.seed, test_originals=args.test_originals or cfg.test_originals,
                  copied=args.copied or cfg.copied)
    with tempfile.TemporaryDirectory(prefix="sampan-qr-bench-") as tmp:
        results = run_bench(cfg, Path(tmp))
    given = list(sys.argv[1:] if argv is None else argv)
    results["command"] = " ".join(["nice -n 5 .venv/bin/python bench/qr_anticounterfeit.py", *given]).strip()
    print("\n" + tables(results))
    out = args.out or ROOT / "bench" / "results" / f"qr_anticounterfeit{'_quick' if args.quick else ''}.json"
    write_json(out, results)
    print(f"\nJSON: {out}")
    snippet = args.snippet or (None if args.quick else ROOT / "bench" / "results" / "qr_benchmark_snippet.md")
    if snippet is not None:
        write_snippet(snippet, results)
        print(f"snippet: {snippet}")
    return results


if __name__ == "__main__":
    main()
