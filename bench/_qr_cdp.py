"""Copy detection on the simulated channel for the QR benchmark: one shared test set, every verifier side by side.

Why not `sampan.qr.cdp_eval.evaluate` and `sampan.qr.fl_eval.compare` as they are: each makes its own test set,
so the verifiers would be rated on different captures and the run would cost twice. Here the test originals are
printed and captured ONCE; copies of them are made for each attacker printer and copy kind and captured by the
same phone as the original; every verifier (keyed correlation, calibrated correlation, one-class model, the
linear model trained federated / central / local-only through Q4's `sampan.qr.federated`) scores the same
feature vectors. The one-class and calibrated models are fitted on a separate set of originals only; the FL
sites' labelled captures come from `sampan.qr.fl_eval.capture_items` with its non-IID `SITE_PLAN`.

The figures hold for the simulated print-and-capture channel only, not for real printers and phones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.qr.cdp import CdpError, CdpLayout, render_original
from sampan.qr.channel import DEVICES, PRINTERS, PrintCaptureChannel
from sampan.qr.copies import COPY_KINDS, attacker_channel, make_copy, train_estimator
from sampan.qr.features import extract_features, split_features
from sampan.qr.verifiers import CalibratedCorrelation, OneClassModel, keyed_scores, rates, threshold_at

PHONES = tuple(d for d in DEVICES if d.startswith("phone"))
ATTACKER_PRINTERS = ("office-laser", "attacker-hq")  # the issuer's own printer model, and a better press
P_FAS = (0.01, 0.001)


@dataclass
class TestSet:
    """Feature vectors of the test originals and, per (printer, kind), of their copies; (serial, features)."""

    originals: list[tuple[str, np.ndarray]] = field(default_factory=list)
    copies: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    undecoded: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _features(capture: np.ndarray, layout: CdpLayout) -> np.ndarray | None:
    try:
        return extract_features(capture, layout)
    except CdpError:
        return None


def train_originals(text: str, key: bytes, layout: CdpLayout, n: int,
                    rng: np.random.Generator) -> tuple[list[np.ndarray], list[str], int]:
    """Originals only (distinct serials, phones in turn) for the one-class and calibrated models."""
    channel = PrintCaptureChannel()
    feats, serials, lost = [], [], 0
    for i in range(n):
        serial = f"train-{i}"
        phone = channel.with_device(PHONES[i % len(PHONES)])
        f = _features(phone.capture(channel.print_sheet(render_original(text, key, serial, layout), rng), rng),
                      layout)
        if f is None:
            lost += 1
        else:
            feats.append(f)
            serials.append(serial)
    return feats, serials, lost


def build_test_set(text: str, key: bytes, layout: CdpLayout, *, n_originals: int, n_copied: int,
                   rng: np.random.Generator, estimator_codes: int,
                   tick: Callable[[str], None] = lambda _: None) -> TestSet:
    """`n_originals` originals; the first `n_copied` of them copied once per (attacker printer, kind)."""
    ts = TestSet()
    channel = PrintCaptureChannel()
    t0 = time.perf_counter()
    estimators = {p: train_estimator(text, layout, rng, codes=estimator_codes, scan=attacker_channel(PRINTERS[p]))
                  for p in ATTACKER_PRINTERS}
    ts.seconds["train_ml_estimators"] = time.perf_counter() - t0
    ts.undecoded = {"original": 0, **{f"{p}/{k}": 0 for p in ATTACKER_PRINTERS for k in COPY_KINDS}}
    for p in ATTACKER_PRINTERS:
        for k in COPY_KINDS:
            ts.copies[(p, k)] = []
    copy_seconds = dict.fromkeys(COPY_KINDS, 0.0)
    t0 = time.perf_counter()
    for i in range(n_originals):
        serial = f"SN-{i}"
        phone = channel.with_device(PHONES[i % len(PHONES)])
        sheet = channel.print_sheet(render_original(text, key, serial, layout), rng)
        f = _features(phone.capture(sheet, rng), layout)
        if f is None:
            ts.undecoded["original"] += 1
        else:
            ts.originals.append((serial, f))
        if i < n_copied:
            for p in ATTACKER_PRINTERS:
                for k in COPY_KINDS:
                    t1 = time.perf_counter()
                    copy = make_copy(k, sheet, rng, estimator=estimators[p], layout=layout, printer=PRINTERS[p])
                    copy_seconds[k] += time.perf_counter() - t1
                    g = _features(phone.capture(copy, rng), layout)
                    if g is None:
                        ts.undecoded[f"{p}/{k}"] += 1
                    else:
                        ts.copies[(p, k)].append((serial, g))
        if (i + 1) % 50 == 0:
            tick(f"test items {i + 1}/{n_originals}")
    ts.seconds["test_set"] = time.perf_counter() - t0
    for k in COPY_KINDS:
        ts.seconds[f"per_copy_{k}"] = copy_seconds[k] / max(n_copied * len(ATTACKER_PRINTERS), 1)
    return ts


def scorers(key: bytes, train: list[np.ndarray], train_serials: list[str],
            linear_models: dict[str, Any]) -> dict[str, Callable[[str, np.ndarray], float]]:
    """verifier name -> score(serial, features), higher = more like an original."""
    from sampan.qr.linear import model_features

    one_class = OneClassModel().fit(np.array(train))
    calibrated = CalibratedCorrelation(key).fit(train, train_serials)
    out: dict[str, Callable[[str, np.ndarray], float]] = {
        "correlation": lambda s, f: keyed_scores(split_features(f)[1], key, s)[0],
        "calibrated": lambda s, f: calibrated.score(f, s),
        "one_class": lambda s, f: float(one_class.score(f[None, :])[0]),
    }
    for name, model in linear_models.items():
        out[f"fl:{name}"] = (lambda m: lambda s, f: float(m.score(model_features(f, key, s)[None, :])[0]))(model)
    return out


def rate_all(ts: TestSet, score_fns: dict[str, Callable[[str, np.ndarray], float]]) -> dict[str, Any]:
    """{verifier: {printer: {kind: {auc, p_miss@0.01, p_miss@0.001}}}} and how each P_fa threshold was set."""
    results: dict[str, Any] = {}
    thresholds: dict[str, dict[str, float]] = {}
    for name, fn in score_fns.items():
        orig = np.array([fn(s, f) for s, f in ts.originals])
        thresholds[name] = {f"{p:g}": threshold_at(orig, p)[0] for p in P_FAS}
        per: dict[str, dict[str, dict[str, float]]] = {}
        for (p, k), items in ts.copies.items():
            if len(items) == 0:
                continue
            per.setdefault(p, {})[k] = rates(orig, np.array([fn(s, f) for s, f in items]), P_FAS)
        results[name] = per
    n = len(ts.originals)
    methods = {f"{p:g}": threshold_at(np.arange(max(n, 2), dtype=float), p)[1] for p in P_FAS}
    return {"results": results, "threshold_method": methods, "thresholds": thresholds}


def train_fl(text: str, key: bytes, layout: CdpLayout, *, items_per_site: int, work_dir: Path, seed: int,
             rng: np.random.Generator, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The linear verification model trained federated / central / each site alone on Q4's non-IID sites."""
    from sampan.qr.federated import FlSettings, SiteCaptures, train_central, train_federated, train_local_only
    from sampan.qr.fl_eval import SITE_PLAN, capture_items

    info: dict[str, Any] = {"site_plan": {k: {"device": d, "copy_kinds": list(c)} for k, (d, c) in SITE_PLAN.items()},
                            "items_per_site": items_per_site, "rounds": rounds, "counts": {}, "seconds": {}}
    t0 = time.perf_counter()
    estimator = train_estimator(text, layout, rng, codes=4)
    sites = []
    for name, (device, kinds) in SITE_PLAN.items():
        captured = capture_items(text, key, layout, prefix=name, items=items_per_site, devices=(device,),
                                 kinds=kinds, rng=rng, estimator=estimator, every_kind=False)
        sites.append(SiteCaptures(name, np.array([f for _, _, f in captured]), [s for s, _, _ in captured],
                                  np.array([int(k != "original") for _, k, _ in captured]), (device,)))
        info["counts"][name] = len(captured)
    info["seconds"]["site_captures"] = time.perf_counter() - t0
    settings = FlSettings(rounds=rounds)
    t0 = time.perf_counter()
    fed = train_federated(sites, key, store_path=work_dir / "runs.db", work_dir=work_dir / "sites",
                          settings=settings, seed=seed)
    info["seconds"]["federated_training"] = time.perf_counter() - t0
    info["run_id"] = fed.run_id
    models = {"federated": fed.model, "central": train_central(sites, key, settings=settings, seed=seed).model}
    for s in sites:
        models[f"local:{s.name}"] = train_local_only(s, key, settings=settings, seed=seed).model
    return models, info


def distributed_check(key: bytes, model: Any, ts: TestSet, *, scans: int, sites: int = 3,
                      threshold: int = 2) -> dict[str, Any]:
    """Time sharing / per-site / combine, and check the shared verdict equals the plain (unshared) one."""
    from sampan.qr.distributed import Combiner, KeyedCorrelation, ModelVerifier, VerificationSite, make_request
    from sampan.qr.linear import model_features

    orig = np.array([keyed_scores(split_features(f)[1], key, s)[0] for s, f in ts.originals])
    accept = {"correlation": threshold_at(orig, 0.01)[0]}
    site_objs = [VerificationSite(f"site-{j + 1}", j + 1, [KeyedCorrelation(key), ModelVerifier(model, key)])
                 for j in range(sites)]
    combiner = Combiner(threshold, [s.info for s in site_objs], accept)
    pool = ts.originals[: (scans + 1) // 2] + [x for items in ts.copies.values() for x in items][: scans // 2]
    times: dict[str, list[float]] = {"share_and_seal": [], "per_site": [], "combine": []}
    agree, max_err = 0, 0.0
    for serial, f in pool:
        t0 = time.perf_counter()
        request = make_request(f, serial, [s.info for s in site_objs], threshold)
        times["share_and_seal"].append(time.perf_counter() - t0)
        answers = []
        for site in site_objs:
            t0 = time.perf_counter()
            answers.append(site.answer(request))
            times["per_site"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        verdict = combiner.combine(request.scan_id, answers)
        times["combine"].append(time.perf_counter() - t0)
        plain_corr = keyed_scores(split_features(f)[1], key, serial)[0]
        plain_model = float(model.score(model_features(f, key, serial)[None, :])[0])
        plain_verdict = "original" if plain_corr >= accept["correlation"] else "copy"
        agree += int(verdict.verdict == plain_verdict)
        max_err = max(max_err, abs(verdict.scores["correlation"] - plain_corr),
                      abs(verdict.scores["model"] - plain_model))
    return {"sites": sites, "threshold": threshold, "scans": len(pool), "n_features": int(pool[0][1].size),
            "verdicts_equal": agree, "max_abs_score_difference": max_err,
            "median_seconds": {k: float(np.median(v)) for k, v in times.items()},
            "accept": accept, "checked": bool(sites > threshold)}
