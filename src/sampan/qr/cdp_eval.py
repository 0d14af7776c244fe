"""One measurement of copy detection on the simulated channel: AUC and P_miss at P_fa per copy kind.

Originals of distinct serials are printed on the issuer's printer and captured by phones in turn; each
original is copied once per kind and the copy captured by the same phone. Scores: the keyed correlation,
minus the Hamming distance, the correlation calibrated for capture sharpness, and a one-class model; the
last two are fitted on a separate set of originals only. A capture
that does not decode is left out of the scores and counted in `undecoded`. The figures hold for this
simulated channel only, not for real printers and phones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sampan.qr.cdp import CdpConfigError, CdpError, CdpLayout, layout_for, render_original
from sampan.qr.channel import DEVICES, PRINTERS, PrintCaptureChannel, rng_for
from sampan.qr.copies import COPY_KINDS, attacker_channel, make_copy, train_estimator
from sampan.qr.features import extract_features, split_features
from sampan.qr.verifiers import CalibratedCorrelation, OneClassModel, keyed_scores, rates

__all__ = ["CdpEvaluation", "evaluate"]

_PHONES = tuple(d for d in DEVICES if d.startswith("phone"))


@dataclass
class CdpEvaluation:
    """Per verifier and copy kind: {"auc", "p_miss@0.01", "p_miss@0.001"}; plus counts and timings."""

    results: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    n_originals: int = 0
    n_train: int = 0
    undecoded: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text table, one row per (verifier, kind)."""
        rows = [f"{'verifier':<12} {'copy kind':<12} {'AUC':>6} {'Pmiss@1%':>9} {'Pmiss@0.1%':>11}"]
        for verifier, kinds in self.results.items():
            for kind, r in kinds.items():
                rows.append(f"{verifier:<12} {kind:<12} {r['auc']:6.3f} {r['p_miss@0.01']:9.3f} "
                            f"{r['p_miss@0.001']:11.3f}")
        return "\n".join(rows)


def _features(capture: np.ndarray, layout: CdpLayout) -> np.ndarray | None:
    try:
        return extract_features(capture, layout)
    except CdpError:
        return None


def evaluate(text: str, key: bytes, *, n_originals: int = 50, n_train: int | None = None,
             kinds: tuple[str, ...] = COPY_KINDS, seed: int = 0, estimator_codes: int = 6,
             layout: CdpLayout | None = None, attacker_printer: str = "attacker-laser") -> CdpEvaluation:
    """Run the experiment (deterministic given `seed`); see the module docstring."""
    layout = layout or layout_for(text)
    rng = rng_for(seed)
    channel = PrintCaptureChannel()
    ev = CdpEvaluation(n_originals=n_originals, n_train=n_train if n_train is not None else n_originals)
    ev.undecoded = {"original": 0, "train": 0, **{k: 0 for k in kinds}}
    t0 = time.perf_counter()
    if attacker_printer not in PRINTERS:
        raise CdpConfigError(f"field 'attacker_printer' must be one of {sorted(PRINTERS)}, got {attacker_printer!r}")
    printer = PRINTERS[attacker_printer]
    estimator = (train_estimator(text, layout, rng, codes=estimator_codes, scan=attacker_channel(printer))
                 if "ml_reprint" in kinds else None)
    ev.seconds["train_estimator"] = time.perf_counter() - t0
    train: list[np.ndarray] = []
    train_serials: list[str] = []
    t0 = time.perf_counter()
    for i in range(ev.n_train):
        phone = channel.with_device(_PHONES[i % len(_PHONES)])
        f = _features(phone.transmit(render_original(text, key, f"train-{i}", layout), int(rng.integers(2**63))),
                      layout)
        if f is None:
            ev.undecoded["train"] += 1
        else:
            train.append(f)
            train_serials.append(f"train-{i}")
    ev.seconds["per_original_capture"] = (time.perf_counter() - t0) / max(ev.n_train, 1)
    feats: dict[str, list[tuple[str, np.ndarray]]] = {"original": [], **{k: [] for k in kinds}}
    copy_time = dict.fromkeys(kinds, 0.0)
    for i in range(n_originals):
        serial = f"SN-{i}"
        phone = channel.with_device(_PHONES[i % len(_PHONES)])
        sheet = channel.print_sheet(render_original(text, key, serial, layout), rng)
        f = _features(phone.capture(sheet, rng), layout)
        if f is None:
            ev.undecoded["original"] += 1
        else:
            feats["original"].append((serial, f))
        for kind in kinds:
            t0 = time.perf_counter()
            copy = make_copy(kind, sheet, rng, estimator=estimator, layout=layout, printer=printer)
            copy_time[kind] += time.perf_counter() - t0
            f = _features(phone.capture(copy, rng), layout)
            if f is None:
                ev.undecoded[kind] += 1
            else:
                feats[kind].append((serial, f))
    for kind in kinds:
        ev.seconds[f"per_copy_{kind}"] = copy_time[kind] / max(n_originals, 1)
    model = OneClassModel().fit(np.array(train))
    calibrated = CalibratedCorrelation(key).fit(train, train_serials)

    def scores(group: str) -> dict[str, np.ndarray]:
        keyed = np.array([keyed_scores(split_features(f)[1], key, s) for s, f in feats[group]])
        stats = np.array([f for _, f in feats[group]])
        calib = np.array([calibrated.score(f, s) for s, f in feats[group]])
        return {"correlation": keyed[:, 0], "hamming": -keyed[:, 1], "calibrated": calib,
                "one_class": model.score(stats)}

    orig = scores("original")
    for kind in kinds:
        fake = scores(kind)
        for verifier in orig:
            ev.results.setdefault(verifier, {})[kind] = rates(orig[verifier], fake[verifier])
    return ev
