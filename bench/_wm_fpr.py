"""Empirical false-positive rates for the watermark benchmark (issue 19).

- Sampan: `detect` on (unmarked image, fresh random key) pairs; count p <= 1e-3 and p <= 1e-6. The images are
  the benchmark's unmarked test images and their JPEG-75 copies, cycled; every pair has its own key from
  `generate_key()` (secrets). Partial results are written every `checkpoint` pairs, so a long run can be stopped
  and still read.
- Baselines (no key, no p-value): each unmarked image is decoded once and its bits compared with many random
  32-bit payloads; "detected" = matches >= k of the binomial-tail rule (_wm_methods.matches_needed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _wm_methods import N_BITS, Method, matches_needed
from scipy.stats import beta

FPRS = (1e-3, 1e-6)


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval for k successes out of n."""
    if n == 0:
        return 0.0, 1.0
    a = (1 - conf) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def fpr_pool(images: Sequence[np.ndarray], side: int | None = None) -> list[np.ndarray]:
    """The unmarked images and their JPEG-75 copies (so the pool is not only pristine PNG-like pixels); with
    `side`, each image is first cut into its side x side quadrant crops (a cheaper detector call per pair on a
    shared machine; the detector's search, hence its p-value correction, does not depend on the image size)."""
    from sampan.watermark.attacks import _jpeg

    pool = [np.asarray(im) for im in images]
    if side is not None:
        pool = [im[y:y + side, x:x + side] for im in pool for y in range(0, im.shape[0] - side + 1, side)
                for x in range(0, im.shape[1] - side + 1, side)]
    return pool + [_jpeg(im, 75) for im in pool]


def summarise_p_values(p_values: Sequence[float], elapsed_s: float) -> dict[str, Any]:
    p = np.asarray(p_values, dtype=np.float64)
    n = int(p.size)
    out: dict[str, Any] = {"pairs": n, "elapsed_s": round(elapsed_s, 1), "min_p": float(p.min()) if n else None}
    for f in FPRS:
        k = int((p <= f).sum())
        lo, hi = clopper_pearson(k, n)
        out[f"{f:g}"] = {"false_positives": k, "rate": k / n if n else None, "expected": f * n,
                         "ci95": [lo, hi]}
    out["p_quantiles"] = {str(q): float(np.quantile(p, q)) for q in (0.001, 0.01, 0.1, 0.5)} if n else {}
    return out


def sampan_fpr(pool: Sequence[np.ndarray], pairs: int, *, out_path: Path | None = None, checkpoint: int = 250,
               meta: dict[str, Any] | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Sampan's detector on `pairs` (unmarked image, fresh key) pairs."""
    from sampan.watermark.detect import detect
    from sampan.watermark.keys import generate_key

    p_values: list[float] = []
    start = time.time()
    result: dict[str, Any] = {}
    for i in range(pairs):
        det = detect(pool[i % len(pool)], generate_key(), n_bits=N_BITS)
        p_values.append(float(det.p_value))
        if (i + 1) % checkpoint == 0 or i + 1 == pairs:
            result = summarise_p_values(p_values, time.time() - start)
            result["complete"] = i + 1 == pairs
            result["pool_images"] = len(pool)
            result["meta"] = meta or {}
            if out_path is not None:
                tmp = out_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(result, indent=1))
                tmp.replace(out_path)
            progress(f"  FPR pairs {i + 1}/{pairs}: p<=1e-3 {result['0.001']['false_positives']}, "
                     f"p<=1e-6 {result['1e-06']['false_positives']} ({time.time() - start:.0f} s)")
    return result


def combine_fpr(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several `sampan_fpr` results (e.g. parallel workers, each pair with its own fresh key) as one."""
    n = sum(int(p["pairs"]) for p in parts)
    out: dict[str, Any] = {"pairs": n, "elapsed_s": max(float(p["elapsed_s"]) for p in parts),
                           "min_p": min(float(p["min_p"]) for p in parts), "workers": len(parts),
                           "complete": n >= 10_000, "pool_images": parts[0].get("pool_images"),
                           "meta": parts[0].get("meta", {})}
    for f in FPRS:
        k = sum(int(p[f"{f:g}"]["false_positives"]) for p in parts)
        lo, hi = clopper_pearson(k, n)
        out[f"{f:g}"] = {"false_positives": k, "rate": k / n if n else None, "expected": f * n, "ci95": [lo, hi]}
    return out


def baseline_fpr(method: Method, pool: Sequence[np.ndarray], payloads_per_image: int,
                 rng: np.random.Generator, distinct: int | None = None) -> dict[str, Any]:
    """A keyless baseline on unmarked images against random payloads (binomial-tail decision); the bias figures
    use the first `distinct` pool images only (default: all)."""
    counts = {f: 0 for f in FPRS}
    n = 0
    decoded = []
    for im in pool:
        bits = method.decode(im, None).bits
        decoded.append(bits)
        payloads = rng.integers(0, 2, size=(payloads_per_image, N_BITS))
        matches = (payloads == bits[None, :]).sum(axis=1)
        for f in FPRS:
            counts[f] += int((matches >= matches_needed(f)).sum())
        n += payloads_per_image
    out: dict[str, Any] = {"pairs": n, "decoded_images": len(pool)}
    # Against RANDOM payloads the match count is Binomial(32, 1/2) whatever the decoder outputs, so the rates
    # above only check the rule. What a FIXED payload risks is the decoder's bias on unmarked images: how alike
    # the bits decoded from different unmarked images are (0.5 = unrelated; near 1 = one pattern for all).
    d = np.asarray(decoded)[:distinct]  # the first `distinct` pool images have different sources (no JPEG twins)
    agree = [(d[i] == d[j]).mean() for i in range(len(d)) for j in range(i + 1, len(d))]
    out["unmarked_bits"] = {"ones_fraction": float(d.mean()),
                            "pairwise_agreement_mean": float(np.mean(agree)) if agree else None,
                            "pairwise_matches_max": int(round(max(agree) * N_BITS)) if agree else None}
    for f in FPRS:
        lo, hi = clopper_pearson(counts[f], n)
        out[f"{f:g}"] = {"false_positives": counts[f], "rate": counts[f] / n, "expected": f * n, "ci95": [lo, hi]}
    return out
