"""Watermark robustness benchmark (issue 19): Sampan's keyed watermark vs invisible-watermark's dwtDct, dwtDctSvd
and rivaGan on the SAME 512 x 512 images and the SAME attacks in ONE run.

Per (attack, method): bit accuracy (mean over images), TPR at FPR 1e-3 and 1e-6 (with exact 95 % intervals), and
per method the PSNR/SSIM of the marked image (sampan.watermark.quality). Payload: 32 random bits per image, the same
for every method. Sampan decides by its detector's p-value; the baselines have none, so they decide by the binomial
tail of the bit matches against the known payload (see _wm_methods). Each attack's randomness (rotation sign, crop
position, ...) is seeded per (image, attack), so every method faces the same attacked geometry.
Empirical FPR: Sampan's detector on >= 10,000 (unmarked image, random key) pairs (--fpr-pairs; --fpr-only runs
just that and writes its own JSON, --fpr-json reuses such a file); the baselines' on unmarked images against
random payloads.

Run from the benchmark venv (tools/install_watermark_bench.sh):
    .venv-watermark/bin/python bench/watermark_robustness.py --quick
    .venv-watermark/bin/python bench/watermark_robustness.py            # full: 12 + 4 images, 10,000 FPR pairs
Writes bench/results/watermark_robustness.json and bench/results/watermark_benchmark_snippet.md (--out, --snippet;
pasted into docs/benchmarks.md, "Issue 19").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _wm_fpr import baseline_fpr, clopper_pearson, combine_fpr, fpr_pool, sampan_fpr  # noqa: E402
from _wm_images import TestImage, test_images  # noqa: E402
from _wm_methods import BASELINES, N_BITS, Method, detected, make_methods  # noqa: E402
from _wm_report import print_tables, write_snippet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FPRS = (1e-3, 1e-6)
GOAL_ROWS = ("jpeg50", "rotate15_rescale")


def run_image(index: int, image: TestImage, methods: list[Method], attacks: list[str], seed: int,
              log: Any) -> dict[str, Any]:
    """Embed with every method, attack each marked image the same way, decode; per-image records."""
    from sampan.watermark.attacks import ATTACKS
    from sampan.watermark.quality import psnr, ssim

    payload = np.random.default_rng([seed, index, 1]).integers(0, 2, N_BITS)
    rec: dict[str, Any] = {"image": image.name, "source": image.source, "payload": payload.tolist(), "methods": {}}
    for m in methods:
        t0 = time.time()
        key = m.new_key() if hasattr(m, "new_key") else None
        marked = m.embed(image.pixels, payload, key)
        q = {"psnr": psnr(image.pixels, marked), "ssim": ssim(image.pixels, marked)}
        rows: dict[str, Any] = {}
        for a_index, name in enumerate(attacks):
            attacked = ATTACKS[name](marked, np.random.default_rng([seed, index, 2, a_index]))
            try:
                dec = m.decode(attacked, key)
            except Exception as exc:  # a decoder that refuses an attacked image: not detected, chance bits
                rows[name] = {"bit_acc": 0.5, "error": f"{type(exc).__name__}: {exc}"[:200],
                              **{f"det_{f:g}": False for f in FPRS}}
                continue
            row: dict[str, Any] = {"bit_acc": float((dec.bits == payload).mean()),
                                   **{f"det_{f:g}": detected(dec, payload, f) for f in FPRS}}
            if dec.p_value is not None:
                row["p_value"] = dec.p_value
            row.update({k: v for k, v in dec.info.items() if v is not None})
            rows[name] = row
        rec["methods"][m.name] = {"quality": q, "attacks": rows, "seconds": round(time.time() - t0, 1)}
        log(f"  {image.name:22s} {m.name:10s} PSNR {q['psnr']:.2f} SSIM {q['ssim']:.4f} "
            f"({time.time() - t0:.1f} s)")
    return rec


def aggregate(records: list[dict[str, Any]], methods: list[str], attacks: list[str]) -> dict[str, Any]:
    """Per (attack, method) means and TPRs with exact 95 % intervals; per method the marked-image quality."""
    table: dict[str, Any] = {}
    for a in attacks:
        table[a] = {}
        for m in methods:
            rows = [r["methods"][m]["attacks"][a] for r in records]
            n = len(rows)
            cell: dict[str, Any] = {"n": n, "bit_acc": float(np.mean([x["bit_acc"] for x in rows]))}
            for f in FPRS:
                k = sum(bool(x[f"det_{f:g}"]) for x in rows)
                cell[f"tpr_{f:g}"] = k / n
                cell[f"tpr_{f:g}_ci95"] = list(clopper_pearson(k, n))
            errors = sum("error" in x for x in rows)
            if errors:
                cell["decoder_errors"] = errors
            table[a][m] = cell
    quality = {}
    for m in methods:
        ps = [r["methods"][m]["quality"]["psnr"] for r in records]
        ss = [r["methods"][m]["quality"]["ssim"] for r in records]
        quality[m] = {"psnr_mean": float(np.mean(ps)), "psnr_min": float(np.min(ps)),
                      "ssim_mean": float(np.mean(ss)), "ssim_min": float(np.min(ss))}
    return {"attacks": table, "quality": quality}


def goal_check(summary: dict[str, Any], geometric: list[str]) -> dict[str, Any]:
    """Issue 19's goal: PSNR >= 38 and TPR >= 0.95 at 1e-6 on the goal rows; ahead of baselines on geometry."""
    out: dict[str, Any] = {}
    if "sampan" not in summary["quality"]:
        return out
    psnr_ok = summary["quality"]["sampan"]["psnr_min"] >= 38.0
    out["psnr_min_at_least_38"] = psnr_ok
    for a in GOAL_ROWS:
        if a in summary["attacks"]:
            tpr = summary["attacks"][a]["sampan"]["tpr_1e-06"]
            out[a] = {"tpr_1e-06": tpr, "met": bool(tpr >= 0.95 and psnr_ok)}
    behind = []
    for a in geometric:
        if a not in summary["attacks"]:
            continue
        cells = summary["attacks"][a]
        for b in cells:
            if b != "sampan" and (cells[b]["tpr_1e-06"] > cells["sampan"]["tpr_1e-06"]
                                  or cells[b]["bit_acc"] > cells["sampan"]["bit_acc"]):
                behind.append(f"{a}: {b}")
    out["geometric_rows_where_a_baseline_is_ahead"] = behind
    return out


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _watermark_source() -> dict[str, Any]:
    """Which sampan.watermark the run measured: the git tree of src/sampan/watermark and whether the working
    copy differed from it (a dirty run cannot be reproduced from a commit), or the commit of a pinned copy
    (`git archive <commit> src | tar -x -C DIR`, a SNAPSHOT_COMMIT file beside src/, PYTHONPATH=DIR/src)."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    import sampan.watermark

    src = Path(sampan.watermark.__file__).resolve().parents[2]
    if src != (ROOT / "src").resolve():  # a pinned copy (git archive) put first on PYTHONPATH
        marker = src.parent / "SNAPSHOT_COMMIT"
        return {"snapshot": str(src), "commit": marker.read_text().strip() if marker.exists() else "unknown",
                "dirty": False}
    last = git("log", "-1", "--format=%h", "--", "src/sampan/watermark")
    return {"last_commit": last or "unknown", "tree": git("rev-parse", "HEAD:src/sampan/watermark")[:12],
            "dirty": bool(git("status", "--porcelain", "--", "src/sampan/watermark"))}


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, {platform.python_version()}"


def check_ssim(images: list[TestImage], attacks: tuple[str, ...] = ("jpeg50", "noise", "blur", "regenerate",
                                                                      "brightness_contrast")) -> dict[str, Any]:
    """sampan.watermark.quality.ssim against scikit-image's structural_similarity (Gaussian, sigma 1.5,
    population covariance, data range 255, on the same luma) over images x attacks: the largest difference."""
    from skimage.metrics import structural_similarity  # type: ignore[import-not-found]

    from sampan.watermark.attacks import ATTACKS
    from sampan.watermark.quality import luma, ssim

    diffs = []
    for i, im in enumerate(images):
        for j, a in enumerate(attacks):
            other = ATTACKS[a](im.pixels, np.random.default_rng([i, j]))
            ref = structural_similarity(luma(im.pixels), luma(other), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=255.0)
            diffs.append(abs(ssim(im.pixels, other) - float(ref)))
    return {"pairs": len(diffs), "max_abs_diff": float(max(diffs)), "attacks": list(attacks)}


def merge_previous(records: list[dict[str, Any]], method_names: list[str], attacks: list[str],
                   path: Path) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Add the methods of a saved run that this run did not execute (e.g. the baselines, which do not change when
    Sampan's code does) to this run's per-image records: same images, payloads and attack seeds, checked."""
    prev = json.loads(path.read_text())
    if [r["image"] for r in prev["per_image"]] != [r["image"] for r in records]:
        raise SystemExit(f"{path}: its images differ from this run's")
    if any(p["payload"] != r["payload"] for p, r in zip(prev["per_image"], records, strict=True)):
        raise SystemExit(f"{path}: its payloads differ from this run's (another --seed?)")
    if not set(attacks) <= set(prev["meta"]["attacks"]):
        raise SystemExit(f"{path}: lacks attacks {sorted(set(attacks) - set(prev['meta']['attacks']))}")
    extra = [m for m in prev["meta"]["methods"] if m not in method_names]
    for p, r in zip(prev["per_image"], records, strict=True):
        for m in extra:
            r["methods"][m] = p["methods"][m]
    reused = {m: prev["fpr"][m] for m in extra if m in prev.get("fpr", {})}
    source = {"file": str(path), "date": prev["meta"]["date"], "commit": prev["meta"]["commit"], "methods": extra,
              "command": prev["meta"]["command"], "elapsed_s": prev["meta"].get("elapsed_s")}
    return method_names + extra, reused, source


def _images_of(result: dict[str, Any]) -> list[TestImage]:
    """The test images a saved run used, rebuilt from their names and sources."""
    from _wm_images import generated_image, skimage_image

    out = []
    for im in result["meta"]["images"]:
        if im["source"].startswith("generated"):
            out.append(generated_image(int(im["source"].split("seed ")[1].rstrip(")"))))
        else:
            out.append(skimage_image(im["name"]))
    return out


def render(args: argparse.Namespace) -> dict[str, Any]:
    """Re-render tables and snippet from a saved run (e.g. once the separate FPR run has finished)."""
    result: dict[str, Any] = json.loads(args.render_from.read_text())
    changed = False
    if args.fpr_json is not None and args.fpr_json.exists():
        result["fpr"]["sampan"] = json.loads(args.fpr_json.read_text())
        changed = True
    stale = [m for m in result["fpr"] if m != "sampan" and (args.recompute_bias
                                                             or "unmarked_bits" not in result["fpr"][m])]
    if stale:  # a run made before the bias figures existed: decode its unmarked images again
        images = _images_of(result)
        pool = fpr_pool([im.pixels for im in images])
        for m in make_methods(stale):
            result["fpr"][m.name] = baseline_fpr(m, pool, result["fpr"][m.name]["pairs"] // len(pool),
                                                 np.random.default_rng([result["meta"]["seed"], 9]),
                                                 distinct=len(images))
        changed = True
    if args.check_ssim and "ssim_check" not in result:
        result["ssim_check"] = check_ssim(_images_of(result))
        changed = True
    if changed:
        args.render_from.write_text(json.dumps(result, indent=1, default=float))
    print_tables(result)
    if not args.no_snippet:
        write_snippet(result, args.snippet)
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 + 1 images, 200 FPR pairs (a smoke run)")
    p.add_argument("--skimage-images", type=int, default=None, help="scikit-image images (default 12; quick 3)")
    p.add_argument("--generated-images", type=int, default=None, help="generated images (default 4; quick 1)")
    p.add_argument("--methods", default=",".join(("sampan", *BASELINES)))
    p.add_argument("--attacks", default=None, help="comma-separated subset of the suite (default: all)")
    p.add_argument("--fpr-pairs", type=int, default=None, help="Sampan FPR pairs (default 10000; quick 200)")
    p.add_argument("--fpr-only", action="store_true", help="run only Sampan's FPR pairs and write --fpr-json")
    p.add_argument("--fpr-side", type=int, default=None, help="cut the unmarked images into side x side crops "
                                                                  "for Sampan's FPR pairs (default: whole images)")
    p.add_argument("--fpr-json", type=Path, default=None, help="FPR result to write (--fpr-only) or reuse")
    p.add_argument("--fpr-combine", type=Path, nargs="+", default=None,
                   help="combine these --fpr-only results (parallel workers) into --fpr-json and stop")
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/watermark_robustness.json")
    p.add_argument("--snippet", type=Path, default=ROOT / "bench/results/watermark_benchmark_snippet.md")
    p.add_argument("--no-snippet", action="store_true")
    p.add_argument("--recompute-bias", action="store_true",
                   help="with --render-from: decode the baselines' unmarked images again for the bias figures")
    p.add_argument("--baselines-from", type=Path, default=None,
                   help="a saved run (same images, seed, attacks) whose other methods' records join this run's")
    p.add_argument("--check-ssim", action="store_true",
                   help="only compare quality.ssim with scikit-image's structural_similarity and print the figure")
    p.add_argument("--render-from", type=Path, default=None,
                   help="reprint and rewrite the snippet from a saved result JSON (with --fpr-json: its Sampan FPR "
                        "replaced by that file's current figures)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.fpr_combine is not None:
        if args.fpr_json is None:
            raise SystemExit("--fpr-combine needs --fpr-json (the combined file to write)")
        combined = combine_fpr([json.loads(f.read_text()) for f in args.fpr_combine])
        args.fpr_json.write_text(json.dumps(combined, indent=1))
        print(json.dumps({k: combined[k] for k in ("pairs", "0.001", "1e-06", "min_p")}))
        return combined
    if args.render_from is not None:
        return render(args)
    from sampan.watermark.attacks import ATTACKS, GEOMETRIC_ATTACKS

    n_sk = args.skimage_images if args.skimage_images is not None else (3 if args.quick else 12)
    n_gen = args.generated_images if args.generated_images is not None else (1 if args.quick else 4)
    pairs = args.fpr_pairs if args.fpr_pairs is not None else (200 if args.quick else 10_000)
    attacks = list(ATTACKS) if args.attacks is None else [a for a in args.attacks.split(",") if a]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise SystemExit(f"unknown attacks: {unknown}; known: {list(ATTACKS)}")
    method_names = [m for m in args.methods.split(",") if m]
    images = test_images(n_sk, n_gen, seed=args.seed)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta = {"command": " ".join(["python", "bench/watermark_robustness.py", *(argv or sys.argv[1:])]),
            "date": started, "commit": _commit(), "watermark_source": _watermark_source(),
            "machine": _machine(), "images": [
                {"name": im.name, "source": im.source} for im in images], "payload_bits": N_BITS,
            "seed": args.seed}

    if args.check_ssim:  # alone; with --render-from it is stored in the saved run and its snippet instead
        res = check_ssim(images)
        print(json.dumps(res))
        return res

    if args.fpr_only:
        out = args.fpr_json or ROOT / "bench/results/watermark_fpr.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        res = sampan_fpr(fpr_pool([im.pixels for im in images], args.fpr_side), pairs, out_path=out,
                         meta={**meta, "image_side": args.fpr_side or 512})
        out.write_text(json.dumps(res, indent=1))
        return res

    methods = make_methods(method_names)
    records = []
    t0 = time.time()
    for i, im in enumerate(images):
        records.append(run_image(i, im, methods, attacks, args.seed, print))
    reused: dict[str, Any] = {}
    if args.baselines_from is not None:
        method_names, reused, meta["methods_reused_from"] = merge_previous(records, method_names, attacks,
                                                                           args.baselines_from)
    summary = aggregate(records, method_names, attacks)
    pool = fpr_pool([im.pixels for im in images])
    fpr: dict[str, Any] = {}
    for m in methods:
        if m.name != "sampan":
            fpr[m.name] = baseline_fpr(m, pool, max(1, pairs // len(pool)), np.random.default_rng([args.seed, 9]),
                                       distinct=len(images))
    for name, figures in reused.items():
        fpr.setdefault(name, figures)
    if "sampan" in method_names and "sampan" not in reused:
        if args.fpr_json is not None:  # a separate --fpr-only run's file (read as it stands now)
            if args.fpr_json.exists():
                fpr["sampan"] = json.loads(args.fpr_json.read_text())
            else:
                print(f"note: {args.fpr_json} not written yet: Sampan's FPR left out of this run")
        elif pairs > 0:
            fpr["sampan"] = sampan_fpr(fpr_pool([im.pixels for im in images], args.fpr_side), pairs,
                                       meta={"image_side": args.fpr_side or 512})
    result = {"meta": {**meta, "elapsed_s": round(time.time() - t0, 1), "attacks": attacks,
                       "methods": method_names},
              "summary": summary, "fpr": fpr,
              "goal": goal_check(summary, [a for a in attacks if a in GEOMETRIC_ATTACKS]),
              "per_image": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print_tables(result)
    if not args.no_snippet:
        write_snippet(result, args.snippet)
    return result


if __name__ == "__main__":
    main()
