"""Evaluation report of a synthetic table, in two parts, each as JSON + HTML.

- ``report.releasable.json`` / ``.html``: statistics of the synthetic table, the model's DP group
  statistics, the sampling report and the privacy receipt (`evaluate.releasable_part`, a whitelist):
  post-processing of the DP release, which may be shared like the synthetic table itself.
- ``report.confidential.json`` / ``.html``: the whole evaluation, including fidelity against the real
  rows, TSTR on real rows, distances to real records and the membership attack, real group rates:
  exact statistics of the real table, under a banner saying so. For the data owner only.

The HTML pages are self-contained like every Sampan report (inline CSS and SVG, a CSP that forbids
network loads, every value escaped) and every file is written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from sampan import __version__
from sampan.files import atomic_write_text
from sampan.report import svg
from sampan.report._style import CSS
from sampan.synth.evaluate import CONFIDENTIAL_NOTICE, RELEASABLE_NOTICE, headline, releasable_part

__all__ = ["render_html", "write_evaluation"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _esc(value: Any) -> str:
    return escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _esc(value if value is not None else "—")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return _esc(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    num = ' class="num"'
    head = "".join(f"<th{num if i else ''}>{_esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{num if i else ''}>{_fmt(c) if i else _esc(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(title: str, body: str, lede: str = "") -> str:
    lede_html = f'<p class="lede">{_esc(lede)}</p>' if lede else ""
    return f"<section><h2>{_esc(title)}</h2>{lede_html}{body}</section>"


def _cards(numbers: Mapping[str, float]) -> str:
    names = {"fidelity_score": ("Fidelity score", "higher is better"),
             "tstr_auc": ("TSTR AUC", "train synthetic, test real"),
             "trtr_auc": ("TRTR AUC", "train real, test real"), "mia_auc": ("Membership attack AUC", "0.5 = chance"),
             "share_closer_to_train": ("Closer to train", "≈ 0.5 without copying"),
             "exact_copies_count": ("Exact copies", "of training rows"),
             "constraint_violations_count": ("Constraint violations", "rows")}
    cards = "".join(
        f'<div class="card"><p class="label">{_esc(names.get(k, (k, ""))[0])}</p><p class="value">{_fmt(v)}</p>'
        f'<p class="hint">{_esc(names.get(k, ("", ""))[1]) or "&#160;"}</p></div>' for k, v in numbers.items())
    return f'<div class="cards">{cards}</div>' if cards else ""


def _fidelity(doc: Mapping[str, Any]) -> str:
    fid = doc["fidelity"]
    chart = svg.bar_chart({k: v["tvd"] for k, v in fid["columns"].items()}, title="Column distance (TVD)",
                          y_label="TVD", width=1000, height=340)
    rows = [[k, v["tvd"], v.get("ks"), v.get("mean_real"), v.get("mean_synthetic")] for k, v in fid["columns"].items()]
    worst = sorted(fid["pairs"].items(), key=lambda kv: -kv[1])[:10]
    body = (f"<figure>{chart}</figure>"
            + _table(["Column", "TVD", "KS", "Mean (real)", "Mean (synthetic)"], rows)
            + "<h3>Pairs with the largest contingency distance</h3>"
            + _table(["Pair", "TVD"], [[k, v] for k, v in worst])
            + _table(["Summary", "Value"], [["Overall score", fid["score"]],
                                            ["Mean column TVD", fid["mean_column_tvd"]],
                                            ["Mean pair TVD", fid["mean_pair_tvd"]],
                                            ["Mean correlation difference", fid["mean_correlation_difference"]],
                                            ["Pairs evaluated", fid["pairs_evaluated"]]]))
    return _section("Fidelity", body, "How closely single columns and pairs of columns match the real training rows. "
                    "Score = 1 − (mean column TVD + mean pair TVD) / 2.")


def _utility(doc: Mapping[str, Any]) -> str:
    u = doc["utility"]
    chart = svg.bar_chart({"train on synthetic": u["tstr_auc"], "train on real": u["trtr_auc"]},
                          title="AUC on the real holdout", y_label="AUC", width=520, height=300)
    body = f"<figure>{chart}</figure>" + _table(["Measure", "Value"], [[k, v] for k, v in u.items()])
    return _section("Utility", body, "Logistic regression trained on the synthetic table (TSTR) or the real "
                    "training rows (TRTR), tested on real rows the synthesiser never saw.")


def _privacy(doc: Mapping[str, Any]) -> str:
    p = doc["privacy"]
    rows = [["DCR median to training rows", p["dcr"]["median_to_train"]],
            ["DCR median to holdout rows", p["dcr"]["median_to_holdout"]],
            ["Share of synthetic rows closer to training than holdout", p["dcr"]["share_closer_to_train"]],
            ["Exact copies of training rows", p["exact_copies"]["of_training_rows"]],
            ["Exact copies of holdout rows (baseline, scaled)",
             p["exact_copies"]["holdout_baseline_scaled_to_train_size"]],
            ["Membership attack AUC", p["membership_inference"]["auc"]],
            *[[f"Membership attack TPR at FPR {f}", v] for f, v in p["membership_inference"]["tpr_at_fpr"].items()]]
    return _section("Privacy", _table(["Check", "Value"], rows),
                    "Empirical checks: they can reveal a leak, not prove its absence. "
                    "The guarantee is the receipt below.")


def _constraints(doc: Mapping[str, Any]) -> str:
    rows = [[c["constraint"], c["violations"], c["violation_rate"], c.get("real_violation_rate")]
            for c in doc["constraints"]]
    return _section("Constraints", _table(["Constraint", "Violations", "Rate", "Rate in real data"], rows))


def _bias(doc: Mapping[str, Any]) -> str:
    parts = []
    for column, entry in doc["bias"].items():
        sources = [s for s in ("before_model", "real", "after_synthetic") if s in entry]
        cats = list(entry[sources[0]])
        headers = (["Group"] + [f"{s.replace('_', ' ')} share" for s in sources]
                   + [f"{s.replace('_', ' ')} label rate" for s in sources])
        rows = [[c] + [entry[s][c]["share"] for s in sources] + [entry[s][c].get("label_rate") for s in sources]
                for c in cats]
        parts.append(f"<h3>{_esc(column)}</h3>" + _table(headers, rows))
    return _section("Bias report", "".join(parts), "Group representation and label rate: what the model implied "
                    "before any target (from its DP tables), the real table (data owner only), "
                    "and the synthetic table.")


def _receipt(doc: Mapping[str, Any]) -> str:
    r = doc["privacy_receipt"]
    rows = [["epsilon", r["epsilon"]], ["delta", r["delta"]], ["rho (zCDP)", r["rho"]], ["accountant", r["accountant"]],
            ["domain", r["domain"]["note"] if r.get("domain") else "—"],
            ["reproducible, not private (seeded)", r["reproducible_not_private"]]]
    rows += [[f"party {p}: epsilon spent ({v['releases']} releases)", v["epsilon_spent"]]
             for p, v in r["parties"].items()]
    return _section("Privacy receipt", _table(["Item", "Value"], rows))


_BANNER = ('<div role="note" style="border:3px solid {c};background:{bg};padding:0.8em 1em;margin:0 0 1em;'
           'font-weight:600">{text}</div>')


def render_html(doc: Mapping[str, Any], title: str = "Synthetic data evaluation") -> str:
    """One page for one part: confidential unless ``doc`` is marked releasable (see `releasable_part`)."""
    releasable = doc.get("confidentiality", {}).get("audience") == "releasable"
    banner = (_BANNER.format(c="#2a7", bg="#effaf3", text=_esc(RELEASABLE_NOTICE)) if releasable else
              _BANNER.format(c="#c00", bg="#fff0f0", text=_esc(CONFIDENTIAL_NOTICE.upper())))
    part = "releasable part" if releasable else "CONFIDENTIAL: data owner only"
    body = [banner,
            f'<header class="top"><div><p class="brand">Sampan · Synthetic data · {_esc(part)}</p>'
            f'<h1>{_esc(title)}</h1>'
            f'<p class="meta"><span>{doc["rows"]["synthetic"]:,} synthetic rows</span></p></div></header>',
            _cards(headline(doc))]
    for key, render in (("fidelity", _fidelity), ("utility", _utility), ("privacy", _privacy),
                        ("constraints", _constraints), ("bias", _bias), ("privacy_receipt", _receipt)):
        if doc.get(key):
            body.append(render(doc))
    if doc.get("skipped"):
        items = "".join(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in doc["skipped"].items())
        body.append(_section("Not evaluated", f'<ul class="notes">{items}</ul>'))
    footer = ("Statistics of the synthetic table and the DP model only." if releasable else
              "Compares synthetic rows with real rows: " + CONFIDENTIAL_NOTICE)
    body.append(f"<footer>Generated by Sampan {_esc(__version__)}. {_esc(footer)}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>'
            f"<title>{_esc(title)}</title><style>{CSS}</style></head>"
            f'<body><div class="page">{"".join(body)}</div></body></html>\n')


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_evaluation(doc: Mapping[str, Any], folder: str | Path,
                     title: str = "Synthetic data evaluation") -> dict[str, Path]:
    """Write the releasable and the confidential part, JSON + HTML each, into ``folder`` (each atomically).
    Keys of the result: ``releasable_json``, ``releasable_html``, ``confidential_json``, ``confidential_html``."""
    out = Path(folder)
    paths: dict[str, Path] = {}
    for part, content in (("releasable", releasable_part(doc)), ("confidential", doc)):
        text = json.dumps(_json_safe(content), indent=2, allow_nan=False)
        paths[f"{part}_json"] = atomic_write_text(out / f"report.{part}.json", text)
        paths[f"{part}_html"] = atomic_write_text(out / f"report.{part}.html", render_html(content, title))
    return paths
