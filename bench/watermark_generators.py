"""The watermark carried through generators (issue 19, item 3): a SMALL-SCALE REPRODUCTION, trained on this machine.

Generator 1: a tile-wise MLP denoiser (sampan.watermark.generator, hand-written gradients, NumPy) trained on
procedural grey images (sampan.watermark.gen_images, made here) with noise sigma 15 -> clean, loss = MSE +
lam * watermark loss through detect's frozen linear decoder (the key's pilot and 32 payload bits). It never calls
embed. Generator 2 (trained WITHOUT any watermark loss, no positional input, on clean unmarked images) is chained
after generator 1: a plain denoiser (noise sigma 8 -> clean) and a contrast/gamma restyler. Controls: generator 1
trained with lam = 0, and the unmarked clean inputs.

Per condition, on held-out 256 x 256 images: bit accuracy of detect()'s bits, the median p-value, TPR at FPR 1e-3
and 1e-6 (detect's analytic, search-corrected p-value), and the PSNR against the clean target.

    .venv/bin/python bench/watermark_generators.py            # ~ minutes on 2 cores
    .venv/bin/python bench/watermark_generators.py --quick    # smaller, for a smoke run
    .venv/bin/python bench/watermark_generators.py --margin 3 --out bench/results/watermark_generators_margin3.json
Writes bench/results/watermark_generators.json and bench/results/watermark_generator_snippet.md (--out, --snippet;
pasted into docs/benchmarks.md, "Issue 19").
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import beta

from sampan.watermark import TILE, detect, generate_key
from sampan.watermark.attacks import run_attack
from sampan.watermark.gen_images import add_noise, procedural_gray
from sampan.watermark.generator import TileGenerator, linear_readout, mark_target, train_generator

ROOT = Path(__file__).resolve().parent.parent
NOISE_G1 = 15.0
NOISE_G2 = 8.0


def restyle(images: np.ndarray) -> np.ndarray:
    """The restyler's target: contrast x1.15 about mid-grey, then gamma 0.85 (a 'look' a generator might add)."""
    x = np.clip((images - 128.0) * 1.15 + 128.0, 0, 255) / 255.0
    return 255.0 * x ** 0.85


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0 ** 2 / mse))


def measure(name: str, outputs: np.ndarray, clean: np.ndarray, key: Any, bits: np.ndarray, mark: Any,
            psnr_vs: np.ndarray | None) -> dict[str, Any]:
    """detect() on every output image, and the frozen decoder's read at the known geometry."""
    started = time.time()
    found = [detect(img, key) for img in outputs]
    p = np.array([d.p_value for d in found])
    acc = np.array([np.mean(np.array(d.bits) == bits) for d in found])
    tiled = outputs.shape[1] % TILE == 0 and outputs.shape[2] % TILE == 0
    known = float((linear_readout(outputs.astype(float), mark)[:, 1:] > 0).mean()) if tiled else None
    same = outputs.shape == clean.shape
    row = {
        "condition": name, "n": len(outputs),
        "bit_accuracy": float(acc.mean()), "bit_accuracy_min": float(acc.min()),
        "decoder_bit_accuracy_known_geometry": known,  # the frozen decoder at the generator's own alignment
        "median_p_value": float(np.median(p)), "median_z": float(np.median([d.statistic for d in found])),
        "tpr_fpr_1e-3": float(np.mean(p <= 1e-3)), "tpr_fpr_1e-6": float(np.mean(p <= 1e-6)),
        "psnr_vs_clean": float(np.mean([psnr(o, c) for o, c in zip(outputs, clean, strict=True)])) if same
        else None,  # resized by an attack: no pixel-wise reference
        "detect_s": round(time.time() - started, 1),
    }
    if psnr_vs is not None:
        row["psnr_vs_generator1_output"] = float(np.mean([psnr(o, c) for o, c in zip(outputs, psnr_vs, strict=True)]))
    print(f"{name:34s} bits {row['bit_accuracy']:.3f}  TPR@1e-3 {row['tpr_fpr_1e-3']:.2f}  "
          f"TPR@1e-6 {row['tpr_fpr_1e-6']:.2f}  median p {row['median_p_value']:.2g}  "
          f"PSNR {row['psnr_vs_clean']}", flush=True)
    return row


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    key = generate_key()  # secrets: the key is never reproducible, the images and training are (seed)
    bits = np.array([secrets.randbits(1) for _ in range(32)])
    mark = mark_target(key, bits)
    train_clean = procedural_gray(args.train, 128, rng)
    train_noisy = add_noise(train_clean, NOISE_G1, rng)
    test_clean = procedural_gray(args.test, 256, rng)
    test_noisy = _uint8(add_noise(test_clean, NOISE_G1, rng))
    common = {"hidden": args.hidden, "steps": args.steps, "batch": 4, "lr": 5e-3, "margin": args.margin}
    timings: dict[str, float] = {}

    def train(name: str, inputs: np.ndarray, targets: np.ndarray, **kw: Any) -> TileGenerator:
        started = time.time()
        model, log = train_generator(inputs, targets, rng, **{**common, **kw})
        timings[name] = round(time.time() - started, 1)
        print(f"trained {name} in {timings[name]} s (last MSE {log.mse[-1]:.1f}, wm loss {log.wm[-1]:.3f})",
              flush=True)
        return model

    g1 = train("generator1_marked", train_noisy, train_clean, mark=mark, lam=args.lam)
    g1_control = train("generator1_lambda0", train_noisy, train_clean, lam=0.0)
    g2_clean = procedural_gray(args.train, 128, rng)
    g2_denoise = train("generator2_denoiser", add_noise(g2_clean, NOISE_G2, rng), g2_clean, positional=False,
                       hidden=args.hidden // 2)
    g2_restyle = train("generator2_restyler", g2_clean, restyle(g2_clean), positional=False,
                       hidden=args.hidden // 2)

    out1 = g1(test_noisy)
    rows = [
        measure("(a) generator 1 (lam > 0)", out1, test_clean, key, bits, mark, None),
        measure("(b) generator 1 -> denoiser", g2_denoise(out1), test_clean, key, bits, mark, out1),
        measure("(b) generator 1 -> restyler", g2_restyle(out1), restyle(test_clean), key, bits, mark, None),
    ]
    for name in args.attacks:
        attacked = np.stack([run_attack(name, img, rng) for img in out1])
        rows.append(measure(f"(a) generator 1 -> attack {name}", attacked, test_clean, key, bits, mark, None))
    rows += [
        measure("(c) generator 1 with lam = 0", g1_control(test_noisy), test_clean, key, bits, mark, None),
        measure("(c) unmarked clean inputs", _uint8(test_clean), test_clean, key, bits, mark, None),
        measure("(c) noisy inputs (reference)", test_noisy, test_clean, key, bits, mark, None),
    ]
    return {
        "label": "SMALL-SCALE REPRODUCTION (tile-wise MLP generators, NumPy, procedural grey images)",
        "setup": {"train_images": f"{args.train} x 128x128 procedural grey (sampan.watermark.gen_images)",
                  "test_images": f"{args.test} x 256x256 held-out procedural grey",
                  "task_generator1": f"denoise (Gaussian sigma {NOISE_G1}) -> clean",
                  "generator2": f"denoiser (sigma {NOISE_G2}) and contrast/gamma restyler, no watermark loss",
                  "lam": args.lam, "margin_grey_levels_per_chip": args.margin, "seed": args.seed, **common},
        "train_seconds": timings, "rows": rows,
    }


def tpr_interval(tpr: float, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95 % interval for a TPR of k/n."""
    k = round(tpr * n)
    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return low, high


def _first_rows(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    by_name = {r["condition"]: r for r in result["rows"]}
    return (by_name["(a) generator 1 (lam > 0)"], by_name["(b) generator 1 -> denoiser"],
            by_name["(c) generator 1 with lam = 0"])


def snippet(result: dict[str, Any], others: list[dict[str, Any]] | None = None) -> str:
    s = result["setup"]
    marked, _, control = _first_rows(result)
    low, high = tpr_interval(marked["tpr_fpr_1e-6"], marked["n"])
    lines = [
        "### Watermark through generators (issue 19, item 3): a SMALL-SCALE REPRODUCTION",
        "",
        f"Generator 1 is a tile-wise MLP ({s['hidden']} hidden units, 16x16 patch -> 8x8 block, plus a learned "
        "bias per block position in the 128x128 mark tile) with hand-written NumPy gradients, trained here for "
        f"{s['steps']} Adam steps on {s['train_images']} images to {s['task_generator1']}, with loss = MSE + "
        f"{s['lam']} x watermark loss (the frozen linear decoder of detect(): pilot and 32 bits pushed to "
        f"{s['margin_grey_levels_per_chip']} grey levels per chip). It never calls embed(). Generator 2 "
        "(no watermark loss, no positional input) is a plain denoiser or a contrast/gamma restyler chained "
        f"after it. Held out: {s['test_images']}. Training times (s): "
        + ", ".join(f"{k} {v}" for k, v in result["train_seconds"].items()) + ".",
        "",
        "| condition | bit accuracy | TPR @ FPR 1e-3 | TPR @ FPR 1e-6 | median p-value | PSNR vs clean (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        value = r["psnr_vs_clean"]
        shown = "-" if value is None or value != value else f"{value:.2f}"  # None (or NaN): resized
        lines.append(f"| {r['condition']} | {r['bit_accuracy']:.3f} | {r['tpr_fpr_1e-3']:.2f} | "
                     f"{r['tpr_fpr_1e-6']:.2f} | {r['median_p_value']:.2g} | {shown} |")
    lines += [
        "",
        f"The mark's cost: generator 1's PSNR vs clean is {marked['psnr_vs_clean']:.2f} dB with the watermark loss "
        f"and {control['psnr_vs_clean']:.2f} dB without (lam = 0), same architecture and steps. With "
        f"{marked['n']} held-out images a TPR of {marked['tpr_fpr_1e-6']:.2f} at FPR 1e-6 has the exact 95 % "
        f"interval [{low:.2f}, {high:.2f}].",
        "",
    ]
    for other in others or []:
        a, b, c = _first_rows(other)
        lines += [f"A run with margin {other['setup']['margin_grey_levels_per_chip']} (same seed "
                  f"{other['setup']['seed']} for images and training, a fresh key): "
                  f"PSNR {a['psnr_vs_clean']:.2f} dB (lam = 0: {c['psnr_vs_clean']:.2f}), "
                  f"bit accuracy {a['bit_accuracy']:.3f}, TPR @ 1e-6 {a['tpr_fpr_1e-6']:.2f} "
                  f"(after the denoiser {b['tpr_fpr_1e-6']:.2f}), median p {a['median_p_value']:.2g} "
                  f"(after the denoiser {b['median_p_value']:.2g}).", ""]
    lines += [
        "TPR uses detect()'s analytic, search-corrected p-value (FPR bounded by construction; the empirical FPR "
        "is measured in the robustness benchmark, not here). The restyler row's PSNR is against the restyled "
        "clean image; attack rows (sampan.watermark.attacks on generator 1's outputs) that change the size "
        "have no PSNR. The watermark loss covers the pilot and the payload bits only, not embed()'s Fourier sync "
        "template, so detect() has no template to undo a rotation or rescale of these outputs with, and the "
        "mark is as weak as `margin` lets it be (a larger margin buys robustness with PSNR). "
        "What this does not show: real generators (diffusion models, GANs) and natural photos; "
        "a generator without a positional input cannot emit a fixed keyed pattern, so the learned per-position "
        "bias is what carries the mark; only the chained generators listed here were tried.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="images and training (the key is always fresh)")
    parser.add_argument("--lam", type=float, default=20.0)
    parser.add_argument("--margin", type=float, default=1.0, help="grey levels per chip (3.0: stronger mark)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/watermark_generators.json")
    parser.add_argument("--snippet", type=Path, default=ROOT / "bench/results/watermark_generator_snippet.md")
    parser.add_argument("--attacks", nargs="*", default=["jpeg50", "rotate15_rescale"],
                        help="sampan.watermark.attacks applied to generator 1's outputs (extra rows)")
    parser.add_argument("--render-from", type=Path, help="only re-write the snippet from this results JSON")
    parser.add_argument("--compare", type=Path, nargs="*", default=[],
                        help="other runs' results JSON (e.g. another margin) summarised in the snippet")
    args = parser.parse_args()
    others = [json.loads(path.read_text()) for path in args.compare]
    if args.render_from is not None:
        args.snippet.write_text(snippet(json.loads(args.render_from.read_text()), others))
        return
    args.train, args.test, args.hidden, args.steps = (16, 4, 32, 100) if args.quick else (64, 16, 64, 400)
    result = run(args)
    args.out.write_text(json.dumps(result, indent=1))
    args.snippet.write_text(snippet(result, others))
    print(f"wrote {args.out} and {args.snippet}")


if __name__ == "__main__":
    main()
