"""Shared small fixtures for the copy-detection tests (Q3): one short code, seeded channels, captures."""

from __future__ import annotations

import numpy as np

from sampan.qr.cdp import CdpLayout, layout_for, render_original
from sampan.qr.channel import PrintCaptureChannel, rng_for
from sampan.qr.copies import make_copy, train_estimator
from sampan.qr.features import extract_features

TEXT = "SMP1:SN-000123:ISSUER:20270101:ABCDEFGHIJ"
KEY = bytes(range(32))
DEVICES = ("phone-a", "phone-b", "phone-c")


def layout() -> CdpLayout:
    """The layout of TEXT at level H (33 modules, a 7-module CDP square of 42x42 cells)."""
    return layout_for(TEXT)


def features_set(n: int, kinds: tuple[str, ...], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Features of `n` originals (serials SN-0..) and of one copy of each kind per original, phones rotating."""
    lay = layout()
    rng = rng_for(seed)
    channel = PrintCaptureChannel()
    estimator = train_estimator(TEXT, lay, rng, codes=3) if "ml_reprint" in kinds else None
    out: dict[str, list[np.ndarray]] = {"original": [], **{k: [] for k in kinds}}
    for i in range(n):
        sheet = channel.print_sheet(render_original(TEXT, KEY, f"SN-{i}", lay), rng)
        phone = channel.with_device(DEVICES[i % len(DEVICES)])
        out["original"].append(extract_features(phone.capture(sheet, rng), lay))
        for kind in kinds:
            copy = make_copy(kind, sheet, rng, estimator=estimator, layout=lay)
            out[kind].append(extract_features(phone.capture(copy, rng), lay))
    return out
