"""Tables, JSON and the markdown snippet of the QR anti-counterfeit benchmark (bench/qr_anticounterfeit.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from sampan.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
SIMULATED = ("Caveat: the copy-detection figures hold for the simulated print-and-capture channel only, not for real "
             "printers and phones.")


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


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def tables(results: dict[str, Any]) -> str:
    """Markdown tables: decode rate, copy detection, distributed verification, quishing."""
    out = []
    dec = results["decode"]["conditions"]
    out.append("**Decode rate per distortion** (issuer's printer, one distortion at a time; zxing-cpp returns the "
               "exact text)\n\n" + _table(["condition", "decoded", "rate"],
                                          [[k, f"{v['decoded']}/{v['n']}", _pct(v["rate"])] for k, v in dec.items()]))
    cd = results["copy_detection"]
    meth = cd["threshold_method"]
    head = ["verifier", "printer", "copy kind", "AUC", "P_miss @ P_fa 1%", "P_miss @ P_fa 0.1%"]
    rows = []
    for verifier, printers in cd["results"].items():
        for printer, kinds in printers.items():
            for kind, r in kinds.items():
                rows.append([verifier, printer, kind, f"{r['auc']:.3f}", _pct(r["p_miss@0.01"]),
                             _pct(r["p_miss@0.001"])])
    counts = cd["counts"]
    out.append(f"**Copy detection** ({counts['test_originals']} test originals, {counts['copies_per_cell']} copies "
               f"per printer and kind, same phones; threshold at P_fa 1%: {meth['0.01']}, at P_fa 0.1%: "
               f"{meth['0.001']}; one-class and calibrated fitted on {counts['train_originals']} other originals; "
               "fl:* = the linear model trained on the three non-IID sites)\n\n" + _table(head, rows))
    d = results["distributed"]
    ms = d["median_seconds"]
    out.append(f"**Distributed verification** ({d['sites']} sites, quorum {d['threshold']}, {d['n_features']} "
               f"features, {d['scans']} scans, median per scan): sharing and sealing {1e3 * ms['share_and_seal']:.1f} "
               f"ms, one site {1e3 * ms['per_site']:.1f} ms, combine {1e3 * ms['combine']:.1f} ms; shared verdict = "
               f"plain verdict on {d['verdicts_equal']}/{d['scans']} scans, largest score difference "
               f"{d['max_abs_score_difference']:.2e}.")
    q = results["quishing"]
    out.append("**Quishing** (tests/qr/url_corpus.py; flagged = warn or block)\n\n" + _table(
        ["corpus", "cases", "malicious", "TP", "FP", "FN", "precision", "recall"],
        [[k, str(v["n"]), str(v["malicious"]), str(v["tp"]), str(v["fp"]), str(v["fn"]), f"{v['precision']:.3f}",
          f"{v['recall']:.3f}"] for k, v in q.items()]))
    return "\n\n".join(out)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(results, indent=1, default=float).encode("utf-8"))


def write_snippet(path: Path, results: dict[str, Any]) -> None:
    """The section the lead pastes into docs/benchmarks.md."""
    m, cfg = results["machine"], results["config"]
    fl = results["fl"]
    sites = ", ".join(f"{k}: {v['device']} with {'+'.join(v['copy_kinds'])}" for k, v in fl["site_plan"].items())
    meth = results["copy_detection"]["threshold_method"]
    how_01 = ("empirical (>= 1000 test originals)" if meth["0.001"] == "empirical" else
              "extrapolated: a Gaussian fitted to the original scores (mean + z_0.001 * sd), because fewer than "
              "1000 test originals give no empirical 0.1% quantile; read it as indicative")
    head = (f"## Anti-counterfeit QR codes (issue 20)\n\n"
            f"Command: `{results['command']}` (seed {cfg['seed']}). Machine: {m['nproc']} cores, {m['cpu']}, "
            f"shared with other sessions; {m['date']}; commit {m['commit']}; {results['seconds_total']:.0f} s.\n\n"
            f"Setup: one signed item code (QR version {cfg['layout']['version']}, level "
            f"{cfg['layout']['error'].upper()}, {cfg['layout']['cdp_modules']}x{cfg['layout']['cdp_modules']}-module "
            f"CDP in the centre), printed on the issuer's simulated office laser and captured by the simulated "
            f"phones in turn. Copies: photocopy, hq_reprint (scan, rectify, threshold, reprint), ml_reprint (a "
            f"per-cell logistic estimator the counterfeiter trains with their own key and printer), reprinted on "
            f"the issuer's printer model (office-laser) or a better press (attacker-hq). P_fa = originals flagged, "
            f"P_miss = copies accepted; the P_fa 1% threshold is {meth['0.01']}; the P_fa 0.1% threshold is "
            f"{how_01}. The FL model: {cfg['fl_rounds']} FedAvg rounds through the horizontal workflow over three "
            f"non-IID sites ({sites}; {fl['items_per_site']} items each, copies made on the attacker-laser "
            f"profile), vs the same model trained centrally on the pooled rows and on each site alone.\n\n")
    body = head + tables(results) + "\n\n" + SIMULATED + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, body.encode("utf-8"))
