"""Document-forgery detection benchmark (issue 18): federated vs central vs each bank alone vs federated DP-SGD.

One run, the same documents for every contender: the non-IID banks of `sampan.fraud.corpus.DEFAULT_BANKS`, each with
its own train / validation / test documents (made locally: see the provenance paragraph printed under the tables).
Every contender trains the same patch model (logistic or MLP) for the same epochs on the same capped training
patches (`sampan.fraud.federated`); the federated ones go through the horizontal workflow (a stored run). Each is
scored on a pooled test set of all banks and on each bank's own: image AUC (fake = positive, bootstrap interval),
FNR at FPR 10% and 1% with the threshold fixed on the REAL VALIDATION images (the FantasyID protocol; exact
interval, and the realised test FPR), ECE, and localisation on inpainted fakes; then leave-one-generator-out (train
on two fake sources, test on real + the third). Run from the repository root:

    nice -n 5 .venv/bin/python bench/fraud_detection.py [--quick] [--out bench/results/fraud_detection.json]

Writes the JSON and (full run, or --snippet PATH) the markdown snippet that is pasted into docs/benchmarks.md
("Issue 18"), whose "Reading" list is written by hand after a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fraud_data import Corpus, Doc, MakeDocs, SplitSizes, build_corpus  # noqa: E402
from _fraud_metrics import FPRS, detection, localisation, score_docs, thresholds  # noqa: E402
from _fraud_report import machine, print_tables, write_json, write_snippet  # noqa: E402

from sampan.fraud.aggregate import AGGREGATIONS  # noqa: E402
from sampan.fraud.corpus import DEFAULT_BANKS, PROVENANCE, bank_corpus  # noqa: E402
from sampan.fraud.federated import (  # noqa: E402
    DpSettings,
    TrainSettings,
    document_privacy,
    train_central,
    train_federated,
    train_local_only,
)
from sampan.fraud.fingerprint import FEATURE_NAMES  # noqa: E402
from sampan.fraud.generators import FAKE_SOURCES  # noqa: E402
from sampan.fraud.scorer import PatchModel  # noqa: E402
from sampan.fraud.slicer import SlicerConfig  # noqa: E402
from sampan.fraud.threshold import min_real_images  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
Say = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run measures (the full run's defaults; `quick()` is the <= 2 min smoke run)."""

    n_banks: int = 4
    size: int = 256
    sizes: SplitSizes = SplitSizes(train=(200, 200), validation=(100, 0), test=(100, 100))
    kinds: tuple[str, ...] = ("logistic", "mlp")
    rounds: int = 30
    learning_rate: float = 0.1
    hidden: tuple[int, ...] = (32,)
    max_patches_per_doc: int = 16
    dp_epsilons: tuple[float, ...] = (1.0, 8.0)
    dp_delta: float = 1e-5
    fprs: tuple[float, ...] = FPRS
    logo: bool = True
    region_labels: bool = True   # also train federated + central with inpainting-region patch labels
    seed: int = 2026
    slicer: SlicerConfig = field(default_factory=SlicerConfig)

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(n_banks=3, size=128, sizes=SplitSizes(train=(16, 16), validation=(34, 0), test=(20, 20)),
                   kinds=("logistic",), rounds=5, dp_epsilons=(8.0,))

    def settings(self, kind: str) -> TrainSettings:
        return TrainSettings(model=kind, rounds=self.rounds, learning_rate=self.learning_rate,  # type: ignore[arg-type]
                             hidden=self.hidden, max_patches_per_doc=self.max_patches_per_doc)


@dataclass
class Contender:
    """A trained patch model, how it was trained and how long it took."""

    name: str
    kind: str
    model: PatchModel
    train_s: float
    bank: str | None = None            # local-only: the bank it belongs to
    dp: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def train_contenders(corpus: Corpus, cfg: BenchConfig, kind: str, work: Path,
                     dp_bounds: Callable[[], Mapping[str, tuple[float, float]]], say: Say,
                     sources: Sequence[str] | None = None, dp: bool = True, alone: bool = True) -> list[Contender]:
    """Federated (horizontal workflow), central (pooled) and, unless told not to, each bank alone and federated DP."""
    banks = [corpus.bank_data(b, sources=sources) for b in corpus.banks]
    settings = cfg.settings(kind)
    tag = f"{kind}-{'-'.join(sources) if sources else 'all'}"
    out: list[Contender] = []
    fed, secs = _timed(lambda: train_federated(banks, settings=settings, store_path=work / f"{tag}.db",
                                               work_dir=work / tag, seed=cfg.seed))
    out.append(Contender("federated", kind, fed.model, secs, info={"run_id": fed.run_id,
                                                                  "run_holdout": fed.final_metrics}))
    say(f"    federated {kind}: {secs:.1f} s")
    central, secs = _timed(lambda: train_central(banks, settings=settings, seed=cfg.seed))
    out.append(Contender("central", kind, central.model, secs))
    say(f"    central {kind}: {secs:.1f} s")
    if cfg.region_labels and alone:
        marked = [corpus.bank_data(b, sources=sources, mask_labels=True) for b in corpus.banks]
        fed, secs = _timed(lambda: train_federated(marked, settings=settings, store_path=work / f"{tag}-region.db",
                                                   work_dir=work / f"{tag}-region", seed=cfg.seed))
        out.append(Contender("federated, region labels", kind, fed.model, secs, info={"run_id": fed.run_id}))
        central, secs = _timed(lambda: train_central(marked, settings=settings, seed=cfg.seed))
        out.append(Contender("central, region labels", kind, central.model, secs))
        say(f"    federated + central {kind} with region labels: {out[-2].train_s + secs:.1f} s")
    if alone:
        for bank in banks:
            started = time.perf_counter()
            local = train_local_only(bank, settings=settings, seed=cfg.seed)
            secs = time.perf_counter() - started
            out.append(Contender(f"alone:{bank.name}", kind, local.model, secs, bank=bank.name))
        say(f"    each bank alone {kind}: {sum(c.train_s for c in out if c.bank):.1f} s")
    for eps in cfg.dp_epsilons if dp else ():
        settings_dp = DpSettings(epsilon=eps, delta=cfg.dp_delta, bounds=dp_bounds())
        started = time.perf_counter()
        result = train_federated(banks, settings=settings, dp=settings_dp, store_path=work / f"{tag}-dp{eps:g}.db",
                                 work_dir=work / f"{tag}-dp{eps:g}", seed=cfg.seed)
        secs = time.perf_counter() - started
        spent = {name: p.get("epsilon_spent") for name, p in ((result.privacy or {}).get("parties") or {}).items()}
        out.append(Contender(f"federated DP eps={eps:g}", kind, result.model, secs,
                             dp={"epsilon": eps, "delta": cfg.dp_delta, "max_grad_norm": settings_dp.max_grad_norm,
                                 "k": cfg.max_patches_per_doc, "epsilon_spent": spent,
                                 "unit": document_privacy(settings_dp, cfg.max_patches_per_doc)},
                             info={"run_id": result.run_id}))
        say(f"    federated DP eps={eps:g} {kind}: {secs:.1f} s")
    return out


def evaluate(c: Contender, corpus: Corpus, cfg: BenchConfig, test: list[Doc] | None = None) -> dict[str, Any]:
    """Thresholds on the pooled real validation images (a local-only model: its own bank's, when it has enough),
    then the pooled test set, each bank's test set and the inpainted fakes' localisation."""
    pooled_val = score_docs(c.model, corpus.select("validation"))
    cuts = thresholds(pooled_val, cfg.fprs)
    threshold_on = "pooled validation reals of all banks"
    if c.bank is not None:
        own = score_docs(c.model, corpus.select("validation", c.bank))
        if int((own.labels == 0).sum()) >= max(min_real_images(f) for f in cfg.fprs):
            cuts, threshold_on = thresholds(own, cfg.fprs), f"{c.bank}'s own validation reals"
    scored = score_docs(c.model, test if test is not None else corpus.select("test"))
    result: dict[str, Any] = {"name": c.name, "kind": c.kind, "train_s": c.train_s, "bank": c.bank, "dp": c.dp,
                              "info": c.info, "threshold_on": threshold_on,
                              "pooled": detection(scored, cuts, cfg.seed), "localisation": localisation(scored)}
    if test is None:
        result["banks"] = {b: detection(scored.subset([d.bank == b for d in scored.docs]), cuts, cfg.seed)
                           for b in corpus.banks}
        if c.bank is None:  # the same model, each bank fixing its own threshold on its own validation reals
            result["banks_own_threshold"] = {}
            for b in corpus.banks:
                own = score_docs(c.model, corpus.select("validation", b))
                enough = [f for f in cfg.fprs if int((own.labels == 0).sum()) >= min_real_images(f)]
                if enough:
                    result["banks_own_threshold"][b] = detection(
                        scored.subset([d.bank == b for d in scored.docs]), thresholds(own, enough), cfg.seed)
    return result


def aggregations(c: Contender, corpus: Corpus, cfg: BenchConfig) -> list[dict[str, Any]]:
    """The same patch model under each image aggregation: pooled test detection, and AUC on inpainted fakes only."""
    rows = []
    for method in AGGREGATIONS:
        cuts = thresholds(score_docs(c.model, corpus.select("validation"), method), cfg.fprs)
        scored = score_docs(c.model, corpus.select("test"), method)
        inpaint = scored.subset([d.label == 0 or d.source == "inpaint" for d in scored.docs])
        rows.append({"kind": c.kind, "name": c.name, "aggregation": method, "pooled": detection(scored, cuts, cfg.seed),
                     "inpaint_only": detection(inpaint, cuts, cfg.seed)})
    return rows


def run_bench(cfg: BenchConfig, work: Path, *, say: Say = print, make: MakeDocs = bank_corpus,
              dp_bounds: Callable[[], Mapping[str, tuple[float, float]]] | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-able results (tables are printed by `print_tables`)."""
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    profiles = DEFAULT_BANKS[:cfg.n_banks]
    say(f"corpus: {cfg.n_banks} banks, {cfg.size}x{cfg.size} px, per bank {cfg.sizes}")
    corpus = build_corpus(profiles, cfg.sizes, cfg.seed, cfg.slicer, cfg.size, say=say, make=make)
    bounds_cache: dict[str, Any] = {}

    def bounds() -> Mapping[str, tuple[float, float]]:
        if "b" not in bounds_cache:
            if dp_bounds is not None:
                bounds_cache["b"] = dp_bounds()
            else:
                from sampan.fraud.training import public_reference_bounds

                bounds_cache["b"] = public_reference_bounds(cfg.slicer, size=cfg.size)
        return bounds_cache["b"]

    contenders: list[dict[str, Any]] = []
    aggregation: list[dict[str, Any]] = []
    for kind in cfg.kinds:
        say(f"training ({kind}):")
        for c in train_contenders(corpus, cfg, kind, work, bounds, say):
            contenders.append(evaluate(c, corpus, cfg))
            if c.name == "federated":
                aggregation += aggregations(c, corpus, cfg)
    fed = [c for c in contenders if c["name"] == "federated"]
    best = max(fed, key=lambda c: c["pooled"].get("auc", 0.0))["kind"]
    logo: list[dict[str, Any]] = []
    if cfg.logo:
        for held in FAKE_SOURCES:
            rest = [s for s in FAKE_SOURCES if s != held]
            say(f"leave-one-generator-out ({best}): train on {', '.join(rest)}, test on real + {held}")
            test = corpus.select("test", sources=[held])
            for c in train_contenders(corpus, cfg, best, work, bounds, say, sources=rest, dp=False, alone=False):
                logo.append({"held_out": held, **evaluate(c, corpus, cfg, test)})
    total = time.perf_counter() - started
    train_rows = {b: int(len(corpus.bank_data(b).labels)) for b in corpus.banks}
    return {
        "config": {**dataclasses.asdict(cfg), "banks": list(corpus.banks), "logo_kind": best,
                   "n_features": len(FEATURE_NAMES),
                   "heatmap_rule": "pixel flagged when its heatmap fake probability >= 0.5 (mean over the patches "
                                   "covering it; uncovered pixels 0)",
                   "ece_rule": "10 equal-width bins of the image fake probability (1 - mean-logit image score)",
                   "aggregation": "mean_logit"},
        "data": {"sizes": corpus.sizes, "empty_images": corpus.empty_images, "train_patches": train_rows},
        "timing": {"generate_s": corpus.generate_s, "extract_s": corpus.extract_s, "n_patches": corpus.n_patches,
                   "patches_per_s": corpus.n_patches / corpus.extract_s if corpus.extract_s else None,
                   "total_s": total, "load_avg_1min": [load_start, os.getloadavg()[0]]},
        "contenders": contenders, "aggregation": aggregation, "logo": logo, "provenance": PROVENANCE,
        "machine": machine(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 small banks, logistic only (<= 2 min)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--kinds", nargs="+", choices=("logistic", "mlp"))
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--no-logo", action="store_true", help="skip leave-one-generator-out")
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/fraud_detection[_quick].json)")
    parser.add_argument("--snippet", type=Path,
                        help="markdown snippet (default bench/results/fraud_benchmark_snippet.md on a full run, none "
                        "on --quick)")
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # the RDP accountant's per-order convergence notes
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    cfg = dataclasses.replace(cfg, seed=args.seed, logo=not args.no_logo, kinds=tuple(args.kinds or cfg.kinds),
                              rounds=args.rounds or cfg.rounds)
    with tempfile.TemporaryDirectory(prefix="sampan-fraud-bench-") as tmp:
        results = run_bench(cfg, Path(tmp))
    command = "nice -n 5 .venv/bin/python bench/fraud_detection.py " + " ".join(sys.argv[1:] if argv is None
                                                                               else argv)
    results["command"] = command.strip()
    tables = print_tables(results)
    out = args.out or ROOT / "bench" / "results" / f"fraud_detection{'_quick' if args.quick else ''}.json"
    write_json(out, results)
    print(f"\nJSON: {out}")
    snippet = args.snippet or (None if args.quick else ROOT / "bench" / "results" / "fraud_benchmark_snippet.md")
    if snippet is not None:
        write_snippet(snippet, results, tables)
        print(f"snippet: {snippet}")


if __name__ == "__main__":
    main()
