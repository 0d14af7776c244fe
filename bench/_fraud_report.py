"""The fraud benchmark's output: markdown tables (printed, and pasted into docs/benchmarks.md), the JSON file and the
snippet with command, machine, date, commit, provenance and the published scale reference."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from sampan.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent

FANTASYID = (
    "Published scale reference: on FantasyID (Korshunov et al., IJCB 2025, arXiv 2507.20808), printed-and-captured "
    "ID cards with forgeries made by generative tools, the state-of-the-art detectors TruFor, MMFusion, UniFD and "
    "FatFormer reach false-negative rates close to 50% at a false-positive rate of 10% fixed on a validation set. "
    "Our figures are on local proxies (procedural renders, small local generators, a simulated capture chain) and "
    "are NOT comparable with those: a low FNR here says that this fingerprint separates these generators' traces, "
    "not that it would catch commercial generators or real print-and-recapture forgeries."
)


def machine() -> dict[str, Any]:
    """nproc, CPU model, date (UTC) and commit: where and when the figures were measured."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return {"nproc": os.cpu_count(), "cpu": model, "commit": commit,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ci(pair: list[float] | None, pct: bool) -> str:
    if not pair:
        return ""
    lo, hi = pair
    return f" [{100 * lo:.1f}-{100 * hi:.1f}]" if pct else f" [{lo:.3f}-{hi:.3f}]"


def _fnr(det: dict[str, Any], fpr: float) -> str:
    row = det.get(f"fpr{fpr:g}")
    if not row or row["fnr"] is None:
        return "n/a"
    return f"{_pct(row['fnr'])}{_ci(row['fnr_ci'], True)} ({_pct(row['test_fpr'])})"


def _short(det: dict[str, Any], fpr: float) -> str:
    row = det.get(f"fpr{fpr:g}")
    if not row or row["fnr"] is None:
        return "n/a"
    return f"{100 * row['fnr']:.0f}% ({100 * row['test_fpr']:.0f}%)"


def _own_bank(results: dict[str, Any], fpr: float) -> str:
    """Each bank on its own test images: its local-only model vs the federated and central ones."""
    rows = []
    for kind in results["config"]["kinds"]:
        by = {c["name"]: c for c in results["contenders"] if c["kind"] == kind}
        for bank in results["config"]["banks"]:
            trio = [by.get(f"alone:{bank}"), by.get("federated"), by.get("central")]
            dets = [c["banks"][bank] if c else {} for c in trio]
            fed_own = (by.get("federated") or {}).get("banks_own_threshold", {}).get(bank, {})
            rows.append([kind, bank, *(_auc(d, ci=False) for d in dets), _short(dets[0], fpr),
                         _short(dets[1], fpr), _short(fed_own, fpr), _short(dets[2], fpr)])
    pct = f"{100 * fpr:g}%"
    return _table(["model", "bank", "AUC alone", "AUC federated", "AUC central", f"FNR@{pct} alone (FPR)",
                   f"FNR@{pct} federated, pooled threshold (FPR)", f"FNR@{pct} federated, bank's own threshold (FPR)",
                   f"FNR@{pct} central (FPR)"], rows)


def _aggregations(results: dict[str, Any]) -> str:
    rows = [[r["kind"], r["aggregation"], _auc(r["pooled"]), *(_fnr(r["pooled"], f) for f in results["config"]["fprs"]),
             _auc(r["inpaint_only"]), _short(r["inpaint_only"], results["config"]["fprs"][0])]
            for r in results.get("aggregation", [])]
    fprs = results["config"]["fprs"]
    heads = [f"FNR @ FPR {100 * f:g}% [95% CI] (test FPR)" for f in fprs]
    return _table(["model", "aggregation", "AUC [95% CI]", *heads,
                   "AUC real vs inpaint only", f"FNR@{100 * fprs[0]:g}% inpaint only (FPR)"], rows)


def _auc(det: dict[str, Any], ci: bool = True) -> str:
    if "auc" not in det:
        return "n/a"
    return f"{det['auc']:.3f}" + (_ci(det.get("auc_ci"), False) if ci else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def tables(results: dict[str, Any]) -> str:
    """All tables as markdown (the same text is printed and written into the snippet)."""
    cfg, fprs = results["config"], results["config"]["fprs"]
    fnr_heads = [f"FNR @ FPR {100 * f:g}% [95% CI] (test FPR)" for f in fprs]
    main_rows, bank_rows = [], []
    for c in results["contenders"]:
        loc = c["localisation"]
        iou = "n/a" if not loc.get("n_images") else f"{loc['mean_iou']:.3f} (n={loc['n_images']})"
        pauc = "n/a" if loc.get("patch_auc") is None else f"{loc['patch_auc']:.3f}"
        main_rows.append([c["kind"], c["name"], f"{c['train_s']:.1f}", _auc(c["pooled"]),
                          *(_fnr(c["pooled"], f) for f in fprs), f"{c['pooled']['ece']:.3f}", iou, pauc])
        bank_rows.append([c["kind"], c["name"], *(
            f"{_auc(c['banks'][b], ci=False)} / " + " / ".join(_short(c["banks"][b], f) for f in fprs)
            for b in cfg["banks"])])
    first = results["contenders"][0]["pooled"] if results["contenders"] else {"n_real": 0, "n_fake": 0}
    b0 = results["contenders"][0]["banks"][cfg["banks"][0]] if results["contenders"] else {"n_real": 0, "n_fake": 0}
    first_bank_sizes = f"{b0['n_real']} real + {b0['n_fake']} fake per bank"
    out = [f"**Pooled test set** ({first['n_real']} real, {first['n_fake']} fake images of {len(cfg['banks'])} "
           f"banks; threshold fixed on the real VALIDATION images; AUC interval: stratified bootstrap of images, "
           f"FNR interval: exact Clopper-Pearson given the threshold)\n",
           _table(["model", "contender", "train s", "AUC [95% CI]", *fnr_heads, "ECE", "IoU inpaint", "patch AUC"],
                  main_rows),
           f"\n**Each bank on its own test images** ({first_bank_sizes}; a local-only model's threshold is fixed "
           "on its own bank's real validation images, the federated and central ones on all banks' pooled)\n",
           _own_bank(results, fprs[0]),
           "\n**Per bank, every contender** (cell = AUC / " + " / ".join(
               f"FNR at FPR {100 * f:g}% (realised test FPR)" for f in fprs) + "; an `alone:` row is that bank's "
           "local-only model scored on every bank's test images)\n",
           _table(["model", "contender", *cfg["banks"]], bank_rows)]
    if results.get("aggregation"):
        out += ["\n**Image aggregation** (the federated patch model; `mean_logit` = mean patch log-odds, the "
                "detector's default and the one used above; `top_logit` = mean log-odds of the 3 least real patches; "
                "`soft_or` = product of patch real probabilities; each with its own validation threshold)\n",
                _aggregations(results)]
    if results["logo"]:
        logo_rows = [[r["held_out"], r["name"], str(r["pooled"]["n_fake"]), _auc(r["pooled"]),
                      *(_fnr(r["pooled"], f) for f in fprs)] for r in results["logo"]]
        out += [f"\n**Leave one generator out** ({cfg['logo_kind']}; trained on real + the other two fake sources, "
                "tested on all real test images + the held-out source; threshold on the real validation images)\n",
                _table(["held-out source", "contender", "test fakes", "AUC [95% CI]", *fnr_heads], logo_rows)]
    t = results["timing"]
    trains = "; ".join(f"{c['kind']} {c['name']} {c['train_s']:.1f} s" for c in results["contenders"]
                       if not c["name"].startswith("alone:"))
    alone = sum(c["train_s"] for c in results["contenders"] if c["name"].startswith("alone:"))
    out.append(f"\n**Timing**: corpus generation {t['generate_s']:.0f} s; feature extraction {t['n_patches']} "
               f"patches in {t['extract_s']:.0f} s ({t['patches_per_s']:.0f} patches/s); training {trains}; every "
               f"bank alone {alone:.1f} s in all; total {t['total_s']:.0f} s"
               + (" (1-min load average {:.1f} at the start, {:.1f} at the end, on {} cores: the machine was "
                  "shared)".format(*t["load_avg_1min"], results["machine"]["nproc"]) if "load_avg_1min" in t else "")
               + ".")
    dps = [c for c in results["contenders"] if c["dp"]]
    if dps:
        d = dps[0]["dp"]
        spent = "; ".join(f"{c['kind']} epsilon {c['dp']['epsilon']:g}: spent " + ", ".join(
            f"{b} {e:.2f}" for b, e in sorted(c["dp"]["epsilon_spent"].items()) if e is not None) for c in dps)
        units = " ".join(f"At epsilon {e:g}: {u}." for e, u in sorted({(c['dp']['epsilon'], c['dp']['unit'])
                                                                        for c in dps}))
        out.append(f"\n**DP-SGD** (federated, every bank): delta {d['delta']:g} per bank, clipping norm "
                   f"{d['max_grad_norm']:g}, noise multiplier derived from the budget over all rounds, the "
                   f"standardisation released under DP (DP1) with clipping bounds from the public reference corpus "
                   f"(`sampan.fraud.training.public_reference_bounds`); privacy unit = one image PATCH, at most "
                   f"k = {d['k']} training patches per document. Ledger: {spent}. {units}")
    notes = (f"Rules: the image score is the mean logit of the patch scores; ECE over {cfg['ece_rule']}; "
             f"localisation IoU = {cfg['heatmap_rule']}, against "
             "the warped inpainting mask, averaged over the inpainted test fakes; patch AUC = manipulated patches "
             "(>= half their pixels in the mask) vs the other patches of the same inpainted images.")
    out.append("\n" + notes)
    return "\n".join(out)


def print_tables(results: dict[str, Any]) -> str:
    text = tables(results)
    print("\n" + text + "\n\n" + results["provenance"] + "\n\n" + FANTASYID)
    return text


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(results, indent=1, default=float).encode("utf-8"))


def write_snippet(path: Path, results: dict[str, Any], text: str) -> None:
    """The section the lead pastes into docs/benchmarks.md."""
    m, cfg = results["machine"], results["config"]
    sizes = cfg["sizes"]
    head = (f"## Document-forgery detection (issue 18)\n\n"
            f"Command: `{results['command']}` (seed {cfg['seed']}). Machine: {m['nproc']} cores, {m['cpu']}, "
            f"shared with other sessions; {m['date']}; commit {m['commit']}.\n\n"
            f"Data: {len(cfg['banks'])} non-IID banks ({', '.join(cfg['banks'])}), {cfg['size']}x{cfg['size']} px, "
            f"per bank train {sizes['train'][0]} real + {sizes['train'][1]} fake, validation "
            f"{sizes['validation'][0]} real, test {sizes['test'][0]} real + {sizes['test'][1]} fake documents "
            f"(three seeded corpora, no document in two splits); patches {cfg['slicer']['size']}x"
            f"{cfg['slicer']['size']} stride {cfg['slicer']['stride']}, {cfg['n_features']} fingerprint features, "
            f"at most "
            f"k = {cfg['max_patches_per_doc']} training patches per document. Every contender trains the same model "
            f"for {cfg['rounds']} epochs (federated: {cfg['rounds']} rounds x 1 local epoch, FedAvg through the "
            f"horizontal workflow; learning rate {cfg['learning_rate']}, batch 64).\n\n")
    body = head + text + "\n\n" + results["provenance"] + "\n\n" + FANTASYID + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, body.encode("utf-8"))
