"""Federated vs central training of the linear verification model on the simulated channel (issue 20, item 3).

Three verification sites, each with its own capture device and the counterfeits it met in the field (non-IID
in both the device and the copy kind: `SITE_PLAN`). Each site trains on its own labelled captures; the test
set is fresh items captured by every phone, one copy of every kind per item. Compared: the keyed correlation
alone (no training), the model trained across the sites through the horizontal workflow, the same model on
the pooled captures (central), and each site alone. Figures: AUC and P_miss at P_fa 1% and 0.1% per copy kind
(`sampan.qr.verifiers.rates`; with fewer than 1000 test originals the 0.1% threshold is a Gaussian
extrapolation). The figures hold for this simulated channel only, not for real printers and phones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sampan.qr.cdp import CdpError, CdpLayout, layout_for, render_original
from sampan.qr.channel import PrintCaptureChannel, rng_for
from sampan.qr.copies import COPY_KINDS, TemplateEstimator, make_copy, train_estimator
from sampan.qr.features import extract_features
from sampan.qr.federated import FlSettings, SiteCaptures, train_central, train_federated, train_local_only
from sampan.qr.linear import model_features
from sampan.qr.verifiers import rates

__all__ = ["SITE_PLAN", "FlComparison", "capture_items", "compare"]

SITE_PLAN: dict[str, tuple[str, tuple[str, ...]]] = {
    "site_a": ("phone-a", ("photocopy", "hq_reprint")),
    "site_b": ("phone-b", ("hq_reprint", "ml_reprint")),
    "site_c": ("phone-c", ("ml_reprint", "photocopy")),
}


@dataclass
class FlComparison:
    """{verifier: {copy kind: {"auc", "p_miss@0.01", "p_miss@0.001"}}}, counts and timings."""

    results: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        rows = [f"{'verifier':<20} {'copy kind':<12} {'AUC':>6} {'Pmiss@1%':>9} {'Pmiss@0.1%':>11}"]
        for verifier, kinds in self.results.items():
            for kind, r in kinds.items():
                rows.append(f"{verifier:<20} {kind:<12} {r['auc']:6.3f} {r['p_miss@0.01']:9.3f} "
                            f"{r['p_miss@0.001']:11.3f}")
        return "\n".join(rows)


def capture_items(text: str, key: bytes, layout: CdpLayout, *, prefix: str, items: int, devices: tuple[str, ...],
                  kinds: tuple[str, ...], rng: np.random.Generator, estimator: TemplateEstimator | None,
                  every_kind: bool) -> list[tuple[str, str, np.ndarray]]:
    """[(serial, "original" | copy kind, features)]: each item printed once, captured by its device, and copied
    (every kind in `kinds`, or one kind in turn); undecodable captures are left out."""
    channel = PrintCaptureChannel()
    out = []
    for i in range(items):
        serial = f"{prefix}-{i}"
        phone = channel.with_device(devices[i % len(devices)])
        sheet = channel.print_sheet(render_original(text, key, serial, layout), rng)
        copies = kinds if every_kind else (kinds[i % len(kinds)],)
        for kind, image in (("original", sheet), *((k, make_copy(k, sheet, rng, estimator=estimator,
                                                                 layout=layout)) for k in copies)):
            try:
                out.append((serial, kind, extract_features(phone.capture(image, rng), layout)))
            except CdpError:
                continue
    return out


def compare(text: str, key: bytes, *, work_dir: Path, items_per_site: int = 40, test_items: int = 60,
            settings: FlSettings | None = None, seed: int = 0) -> FlComparison:
    """Run the comparison (deterministic given `seed`, apart from the run id)."""
    layout = layout_for(text)
    rng = rng_for(seed)
    ev = FlComparison()
    t0 = time.perf_counter()
    estimator = train_estimator(text, layout, rng, codes=4)
    sites = []
    for name, (device, kinds) in SITE_PLAN.items():
        captured = capture_items(text, key, layout, prefix=name, items=items_per_site, devices=(device,), kinds=kinds,
                                 rng=rng, estimator=estimator, every_kind=False)
        sites.append(SiteCaptures(name, np.array([f for _, _, f in captured]), [s for s, _, _ in captured],
                                  np.array([int(k != "original") for _, k, _ in captured]), (device,)))
        ev.counts[name] = len(captured)
    test = capture_items(text, key, layout, prefix="test", items=test_items,
                         devices=tuple(d for d, _ in SITE_PLAN.values()), kinds=COPY_KINDS, rng=rng,
                         estimator=estimator, every_kind=True)
    ev.counts["test"] = len(test)
    ev.seconds["captures"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    settings = settings or FlSettings()
    fed = train_federated(sites, key, store_path=work_dir / "runs.db", work_dir=work_dir / "sites",
                          settings=settings, seed=seed)
    ev.run_id = fed.run_id
    ev.seconds["federated"] = time.perf_counter() - t0
    models = {"federated": fed.model, "central": train_central(sites, key, settings=settings, seed=seed).model,
              **{f"local:{s.name}": train_local_only(s, key, settings=settings, seed=seed).model for s in sites}}
    rows = {kind: np.array([model_features(f, key, s) for s, k, f in test if k == kind])
            for kind in ("original", *COPY_KINDS)}
    scorers = {"correlation": lambda r: r[:, -1], **{n: m.score for n, m in models.items()}}
    for name, score in scorers.items():
        ev.results[name] = {kind: rates(score(rows["original"]), score(rows[kind])) for kind in COPY_KINDS}
    return ev
