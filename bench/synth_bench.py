"""DP synthetic data benchmark: Sampan vs smartnoise-synth's MST and AIM, side by side in one run.

Run from the repository root, in the benchmark venv that has smartnoise-synth (bench/requirements-synth.txt):
    .venv-synth/bin/python bench/synth_bench.py                 # Taiwan + German, eps 1 and 5, federated
    .venv-synth/bin/python bench/synth_bench.py --quick         # German only, 1 repeat, no AIM
    .venv/bin/python bench/synth_bench.py --skip-smartnoise     # Sampan only (no smartnoise needed)
    .venv/bin/python bench/synth_bench.py --federated-only --sampan-repeats 5   # 5 banks vs central
    options: --datasets taiwan german --epsilons 1 5 --repeats 3 --sampan-repeats 10 --aim-repeats 1
             --aim-datasets german taiwan --aim-timeout 1800 --skip-aim --skip-federated

Protocol. Each dataset is split once (seed 0) into 80% training rows and a 20% real holdout. Every
synthesiser is fitted on the training rows at the same (epsilon, delta = 1e-5) and asked for as many
rows as the training set. Utility is TSTR: L2 logistic regression (sampan.synth.tstr, same encoding for
all) trained on the synthetic rows, AUC on the real holdout; TRTR trains on the real training rows.
Fidelity is sampan.synth.fidelity's overall score (1 - mean of column and pair TVDs). Time is fit +
sample wall time, every method on one thread (OMP/OpenBLAS/XLA limited to one thread; the machine is a
shared 2-core VM). MST and AIM run in child processes (a fresh JAX each, and AIM is stopped after
--aim-timeout seconds); their times include JAX compilation, which is part of using them.

Baseline preprocessing (public, no budget spent): smartnoise's MST/AIM need a discrete domain. Each
column is coded over the same public domain Sampan's schema declares: categories as declared; integer
columns with at most 32 values by value; other numeric columns in 16 equal-width bins of sign(x)log(1+|x|)
over the public bounds (better than equal-width bins of x for amounts); decoded uniformly within the bin.
Codes go to snsynth through BinTransformer(bins=k, lower=-0.5, upper=k-0.5), i.e. an exact identity on
codes with a data-independent cardinality. Sampan instead spends part of its budget on DP quantile bins.
MST/AIM samples are drawn with a repaired mbi sampler (see _repair_mbi_sampling; --stock-mbi for the
library's own), which only helps the baselines.

Results go to bench/results/synth.json (synth_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# One core per method, set before NumPy/JAX load: a fair per-core comparison on a shared 2-core machine.
_SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
for _key, _value in _SINGLE_THREAD.items():
    os.environ.setdefault(_key, _value)
from collections.abc import Callable  # noqa: E402 - imported after the single-thread environment is set
from datetime import UTC, datetime  # noqa: E402 - imported after the single-thread environment is set
from pathlib import Path  # noqa: E402 - imported after the single-thread environment is set
from typing import Any  # noqa: E402 - imported after the single-thread environment is set

import numpy as np  # noqa: E402 - imported after the single-thread environment is set

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "src"))

from sampan.data import dirichlet_label_partition, iid_partition, shared_data_dir  # noqa: E402
from sampan.synth import SynthConfig, SynthSchema, fit_federated, fit_synthesizer, generate  # noqa: E402
from sampan.synth.demo import GERMAN_SYNTH_SCHEMA, TAIWAN_SYNTH_SCHEMA, german_table, taiwan_table  # noqa: E402
from sampan.synth.fidelity import fidelity  # noqa: E402
from sampan.synth.table import Table, category_codes  # noqa: E402
from sampan.synth.tstr import train_and_score  # noqa: E402
from sampan.transport.inprocess import InProcessTransport  # noqa: E402 - imported after the single-thread environment is set

DELTA = 1e-5
BASELINE_BINS = 16
Synth = Callable[[Table, SynthSchema, float, int], Table]


# ----------------------------------------------------------------------------------------------- data

def _split(table: Table, seed: int = 0, holdout: float = 0.2) -> tuple[Table, Table]:
    n = len(next(iter(table.values())))
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - holdout)))
    return {k: v[perm[:cut]] for k, v in table.items()}, {k: v[perm[cut:]] for k, v in table.items()}


DATASETS: dict[str, tuple[Callable[[Path], Table], SynthSchema]] = {
    "taiwan": (taiwan_table, TAIWAN_SYNTH_SCHEMA),
    "german": (german_table, GERMAN_SYNTH_SCHEMA),
}


# ----------------------------------------------------------------------------------------- synthesisers

def sampan_synth(train: Table, schema: SynthSchema, epsilon: float, rep: int) -> Table:
    model = fit_synthesizer(train, schema, SynthConfig(epsilon=epsilon, delta=DELTA))
    rows, _ = generate(model, len(next(iter(train.values()))))
    return rows


class _PublicCodes:
    """Integer codes over the schema's public domain (see module doc), and back."""

    def __init__(self, schema: SynthSchema) -> None:
        self.schema = schema
        self.kind: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        for spec in schema.columns:
            if spec.kind == "categorical":
                self.kind[spec.name], self.sizes[spec.name] = "cat", spec.size
            elif spec.integer and spec.bounds[1] - spec.bounds[0] + 1 <= 32:  # type: ignore[index]
                self.kind[spec.name], self.sizes[spec.name] = "int", int(spec.bounds[1] - spec.bounds[0] + 1)  # type: ignore[index]
            else:
                self.kind[spec.name], self.sizes[spec.name] = "bin", BASELINE_BINS

    @staticmethod
    def _t(x: np.ndarray) -> np.ndarray:
        return np.sign(x) * np.log1p(np.abs(x))

    def _edges(self, name: str) -> np.ndarray:
        lo, hi = self.schema.column(name).bounds  # type: ignore[misc]
        return np.linspace(self._t(np.array(lo)), self._t(np.array(hi)), self.sizes[name] + 1)

    def encode(self, table: Table) -> dict[str, np.ndarray]:
        out = {}
        for spec in self.schema.columns:
            v, kind = table[spec.name], self.kind[spec.name]
            if kind == "cat":
                out[spec.name] = category_codes(v, spec)
            elif kind == "int":
                out[spec.name] = (np.rint(v) - spec.bounds[0]).astype(np.int64)  # type: ignore[index]
            else:
                e = self._edges(spec.name)
                out[spec.name] = np.clip(np.searchsorted(e, self._t(v), side="right") - 1, 0, self.sizes[spec.name] - 1)
        return out

    def decode(self, codes: dict[str, np.ndarray], rng: np.random.Generator) -> Table:
        out: Table = {}
        for spec in self.schema.columns:
            c = np.clip(np.asarray(codes[spec.name], dtype=np.int64), 0, self.sizes[spec.name] - 1)
            kind = self.kind[spec.name]
            if kind == "cat":
                out[spec.name] = np.asarray(spec.categories, dtype=object)[c]
            elif kind == "int":
                out[spec.name] = (c + spec.bounds[0]).astype(np.float64)  # type: ignore[index]
            else:
                e = self._edges(spec.name)
                t = e[c] + (e[c + 1] - e[c]) * rng.random(c.size)
                x = np.clip(np.sign(t) * np.expm1(np.abs(t)), *spec.bounds)  # type: ignore[misc]
                out[spec.name] = np.rint(x) if spec.integer else x
        return out


def _repair_mbi_sampling(synth: Any) -> None:
    """Work around the sampling bugs of mbi 1.1.0 (the newest mbi smartnoise-synth 1.0.8 accepts).

    mbi 1.1.0's ``MarkovRandomField.synthetic_data`` (a) conditions each column on the measured cliques
    instead of the junction tree's maximal cliques and (b) in its default "round" mode ranks rows
    within each parent group by position, which correlates columns that should be conditionally
    independent (fixed upstream after 1.1.0, in mbi PR #145). On German credit at eps = 20 this turned
    P(default | age bin) from a flat ~0.3 in the fitted model into 0.04..0.71 in the samples. Using only
    mbi's public API, we (a) re-express the fitted potentials over the junction-tree cliques (the same
    distribution) and (b) sample with mbi's own i.i.d. option. The fitted model, its privacy and its
    fit time are untouched; only the sampler is repaired, which can only help the baselines.
    """
    from mbi import junction_tree
    from mbi.markov_random_field import MarkovRandomField

    est = synth.synthesizer
    jtree, _ = junction_tree.make_junction_tree(est.domain, [set(cl) for cl in est.cliques])
    fixed = MarkovRandomField(potentials=est.potentials.expand(list(jtree.nodes)), marginals=est.marginals,
                              total=est.total)
    original = MarkovRandomField.synthetic_data

    class _IidSampler:
        def __getattr__(self, name: str) -> Any:
            return getattr(fixed, name)

        def synthetic_data(self, rows: int | None = None) -> Any:
            return original(fixed, rows=rows, method="sample")

    synth.synthesizer = _IidSampler()


def smartnoise_synth(kind: str, stock: bool = False) -> Synth:
    def run(train: Table, schema: SynthSchema, epsilon: float, rep: int) -> Table:
        import pandas as pd
        from snsynth import Synthesizer
        from snsynth.transform import BinTransformer, TableTransformer

        coder = _PublicCodes(schema)
        codes = coder.encode(train)
        frame = pd.DataFrame({n: codes[n] for n in schema.names})
        transformer = TableTransformer([BinTransformer(bins=coder.sizes[n], lower=-0.5, upper=coder.sizes[n] - 0.5)
                                        for n in schema.names])
        synth = Synthesizer.create(kind, epsilon=float(epsilon), delta=DELTA, verbose=False)
        synth.fit(frame, transformer=transformer, preprocessor_eps=0.0)
        if not stock:
            _repair_mbi_sampling(synth)
        sample = synth.sample(len(frame))
        sample = pd.DataFrame(sample, columns=schema.names) if not isinstance(sample, pd.DataFrame) else sample
        out = {n: np.rint(sample[n].to_numpy(dtype=np.float64)).astype(np.int64) for n in schema.names}
        return coder.decode(out, np.random.default_rng(rep))
    return run


# ------------------------------------------------------------------------------------------------ runs

def _measure(fn: Synth, train: Table, holdout: Table, schema: SynthSchema, epsilon: float,
             rep: int) -> dict[str, float]:
    started = time.perf_counter()
    rows = fn(train, schema, epsilon, rep)
    seconds = time.perf_counter() - started
    return {"tstr_auc": train_and_score(rows, holdout, schema), "fidelity": fidelity(train, rows, schema)["score"],
            "seconds": seconds}


def _measure_in_child(method: str, dataset: str, epsilon: float, rep: int, timeout: float | None) -> dict[str, Any]:
    """Run one smartnoise fit in a child process (fresh JAX, killable on timeout); metrics come back as JSON."""
    cmd = [sys.executable, __file__, "--child", method, dataset, repr(epsilon), str(rep)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    if done.returncode != 0:
        raise RuntimeError(f"{method} on {dataset} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(method: str, dataset: str, epsilon: str, rep: str) -> None:
    loader, schema = DATASETS[dataset]
    data_dir = shared_data_dir()
    assert data_dir is not None
    train, holdout = _split(loader(data_dir))
    stock = os.environ.get("SAMPAN_BENCH_STOCK_MBI") == "1"
    print(json.dumps(_measure(smartnoise_synth(method, stock), train, holdout, schema, float(epsilon), int(rep))),
          flush=True)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    finished = [r for r in runs if "timeout" not in r]
    out["timeouts"] = len(runs) - len(finished)
    if not finished:
        return out
    for key in ("tstr_auc", "fidelity", "seconds"):
        values = [r[key] for r in finished]
        out[key] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def run_central(name: str, epsilons: list[float], methods: dict[str, tuple[int, float | None]],
                data_dir: Path, aim_datasets: list[str]) -> dict[str, Any]:
    loader, schema = DATASETS[name]
    train, holdout = _split(loader(data_dir))
    out: dict[str, Any] = {"rows_train": len(next(iter(train.values()))),
                           "rows_holdout": len(next(iter(holdout.values()))),
                           "trtr_auc": train_and_score(train, holdout, schema), "epsilons": {}}
    print(f"\n== {name}: {out['rows_train']} training rows, {out['rows_holdout']} holdout; "
          f"TRTR AUC {out['trtr_auc']:.4f}", flush=True)
    for eps in epsilons:
        row: dict[str, Any] = {}
        for method, (repeats, timeout) in methods.items():
            if method == "aim" and name not in aim_datasets:
                continue
            runs = []
            for rep in range(repeats):
                if method == "sampan":
                    runs.append(_measure(sampan_synth, train, holdout, schema, eps, rep))
                else:
                    runs.append(_measure_in_child(method, name, eps, rep, timeout))
                if "timeout" in runs[-1]:
                    print(f"  eps={eps:g} {method:<7} rep {rep + 1}/{repeats}: did not finish in {timeout:.0f} s",
                          flush=True)
                    break
                print(f"  eps={eps:g} {method:<7} rep {rep + 1}/{repeats}: TSTR {runs[-1]['tstr_auc']:.4f} "
                      f"fidelity {runs[-1]['fidelity']:.4f} time {runs[-1]['seconds']:.2f} s", flush=True)
            row[method] = _summary(runs)
        out["epsilons"][str(eps)] = row
    return out


def run_federated(name: str, epsilons: list[float], repeats: int, data_dir: Path, n_banks: int = 5) -> dict[str, Any]:
    """Federated (plain and secure aggregation) vs central synthesis on the same rows, interleaved per repeat."""
    loader, schema = DATASETS[name]
    train, holdout = _split(loader(data_dir))
    n = len(train[schema.label])  # type: ignore[index]
    y = (train[schema.label] == "1").astype(int)  # type: ignore[index]
    partitions = {
        "iid": iid_partition(n, n_banks, np.random.default_rng(7)),
        "dirichlet_label_0.5": dirichlet_label_partition(y, n_banks, 0.5, np.random.default_rng(7)),
    }
    out: dict[str, Any] = {"banks": n_banks, "dataset": name, "partitions": {}}
    print(f"\n== federated: {name}, {n_banks} banks, each at the same epsilon as the central synthesiser", flush=True)

    def federated(banks: dict[str, Table], eps: float, secure: bool) -> dict[str, float]:
        t0 = time.perf_counter()
        model = fit_federated(banks, schema, SynthConfig(epsilon=eps, delta=DELTA), transport=InProcessTransport,
                              secure_aggregation=secure)
        rows, _ = generate(model, n)
        seconds = time.perf_counter() - t0
        return {"tstr_auc": train_and_score(rows, holdout, schema), "fidelity": fidelity(train, rows, schema)["score"],
                "seconds": seconds}

    for part_name, parts in partitions.items():
        banks = {f"bank{i}": {k: v[idx] for k, v in train.items()} for i, idx in enumerate(parts)}
        res: dict[str, Any] = {"bank_rows": [len(p) for p in parts]}
        for eps in epsilons:
            plain, secure, cen = [], [], []
            for rep in range(repeats):
                plain.append(federated(banks, eps, False))
                secure.append(federated(banks, eps, True))
                cen.append(_measure(sampan_synth, train, holdout, schema, eps, rep))
            p, s, c = _summary(plain), _summary(secure), _summary(cen)
            res[str(eps)] = {"federated_plain": p, "federated_secagg": s, "central": c,
                             "tstr_gap_plain": p["tstr_auc"] - c["tstr_auc"],
                             "tstr_gap_secagg": s["tstr_auc"] - c["tstr_auc"]}
            print(f"  {part_name} eps={eps:g}: central TSTR {c['tstr_auc']:.4f} ({c['seconds']:.2f} s); federated "
                  f"plain {p['tstr_auc']:.4f} (gap {p['tstr_auc'] - c['tstr_auc']:+.4f}, {p['seconds']:.2f} s), "
                  f"SecAgg+ {s['tstr_auc']:.4f} (gap {s['tstr_auc'] - c['tstr_auc']:+.4f}, {s['seconds']:.2f} s)",
                  flush=True)
        out["partitions"][part_name] = res
    return out


def _print_table(central: dict[str, Any]) -> None:
    print("\n" + "=" * 100)
    print(f"{'dataset':<8} {'eps':>4} {'method':<7} {'TSTR AUC':>16} {'fidelity':>16} {'fit+sample s':>14} "
          f"{'dAUC vs MST':>11} {'time/MST':>8}")
    for name, res in central.items():
        for eps, row in res["epsilons"].items():
            mst = row.get("mst") if row.get("mst", {}).get("tstr_auc") is not None else None
            for method, s in row.items():
                if s.get("tstr_auc") is None:
                    print(f"{name:<8} {eps:>4} {method:<7} did not finish within the time limit")
                    continue
                d_auc = f"{s['tstr_auc'] - mst['tstr_auc']:+.4f}" if mst else "—"
                ratio = f"{s['seconds'] / mst['seconds']:.3f}" if mst else "—"
                print(f"{name:<8} {eps:>4} {method:<7} {s['tstr_auc']:>8.4f} ± {s['tstr_auc_std']:.4f} "
                      f"{s['fidelity']:>8.4f} ± {s['fidelity_std']:.4f} {s['seconds']:>14.2f} {d_auc:>11} {ratio:>8}")
        print(f"{name:<8} {'':>4} {'real':<7} {res['trtr_auc']:>8.4f} (train on real)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["taiwan", "german"], choices=sorted(DATASETS))
    ap.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 5.0])
    ap.add_argument("--repeats", type=int, default=3, help="repeats for MST (and the federated runs)")
    ap.add_argument("--sampan-repeats", type=int, default=10, help="repeats for Sampan (it takes about a second)")
    ap.add_argument("--aim-repeats", type=int, default=1)
    ap.add_argument("--aim-timeout", type=float, default=1800.0, help="seconds per AIM fit before it is stopped")
    ap.add_argument("--aim-datasets", nargs="+", default=["german"], choices=sorted(DATASETS),
                    help="datasets AIM runs on (on Taiwan it did not finish within 1800 s on one core)")
    ap.add_argument("--stock-mbi", action="store_true",
                    help="sample MST/AIM with mbi 1.1.0's default sampler "
                         "(has the bugs described in _repair_mbi_sampling)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--skip-smartnoise", action="store_true")
    ap.add_argument("--skip-aim", action="store_true")
    ap.add_argument("--skip-federated", action="store_true")
    ap.add_argument("--federated-only", action="store_true", help="only the 5-bank federated vs central comparison")
    ap.add_argument("--quick", action="store_true", help="German only, 1 repeat, no AIM, no federated")
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.stock_mbi:
        os.environ["SAMPAN_BENCH_STOCK_MBI"] = "1"
    if args.quick:
        args.datasets, args.repeats, args.sampan_repeats = ["german"], 1, 1
        args.skip_aim, args.skip_federated = True, True
    data_dir = shared_data_dir()
    if data_dir is None:
        sys.exit("the shared datasets are not on this machine (set SAMPAN_SHARED_DATA)")
    if args.federated_only:
        report = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "platform": platform.platform(), "loadavg_before": os.getloadavg()},
                  "federated": {name: run_federated(name, args.epsilons, args.sampan_repeats, data_dir)
                                for name in args.datasets}}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "synth_federated.json").write_text(json.dumps(report, indent=2))
        print(f"\nwrote {RESULTS / 'synth_federated.json'}")
        return
    methods: dict[str, tuple[int, float | None]] = {"sampan": (args.sampan_repeats, None)}
    versions: dict[str, str] = {"numpy": np.__version__}
    if not args.skip_smartnoise:
        try:
            from importlib.metadata import version

            versions["smartnoise-synth"] = version("smartnoise-synth")
            versions["mbi"] = version("mbi")
            versions["jax"] = version("jax")
        except Exception as exc:  # noqa: BLE001
            sys.exit(f"smartnoise-synth is not installed in this interpreter ({exc}); see bench/requirements-synth.txt "
                     "or pass --skip-smartnoise")
        methods["mst"] = (args.repeats, None)
        if not args.skip_aim:
            methods["aim"] = (args.aim_repeats, args.aim_timeout)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": os.getloadavg()},
        "versions": versions, "delta": DELTA, "epsilons": args.epsilons, "threads": _SINGLE_THREAD,
        "aim_timeout_seconds": args.aim_timeout,
        "aim_datasets": args.aim_datasets,
        "mbi_sampler": ("stock mbi 1.1.0 'round'" if args.stock_mbi
                        else "repaired: junction-tree cliques, i.i.d. sampling"),
        "central": {name: run_central(name, args.epsilons, methods, data_dir, args.aim_datasets)
                    for name in args.datasets},
    }
    if not args.skip_federated:
        report["federated"] = {name: run_federated(name, args.epsilons, args.sampan_repeats, data_dir)
                               for name in args.datasets}
    report["seconds_total"] = (datetime.now(UTC) - started).total_seconds()
    _print_table(report["central"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("synth_quick.json" if args.quick else "synth.json")
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
