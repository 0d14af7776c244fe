"""Render a `RunReport` as one self-contained HTML page and write it atomically.

The page embeds its CSS and SVG charts, loads nothing from the network (a Content-Security-Policy
forbids it), escapes every user-provided string, and is well-formed XML so it can be checked by a
parser. Extra `ReportSection`s are inserted as-is: their producer is responsible for escaping.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sampan import __version__
from sampan.files import atomic_write_bytes
from sampan.report import svg
from sampan.report._format import fmt_metric, fmt_seconds, higher_is_better, metric_name, ordered_keys
from sampan.report._style import CSS
from sampan.report._svg_base import esc
from sampan.report.content import (
    CalibrationLike,
    PartySummary,
    ReportSection,
    RoundRecord,
    RunReport,
)
from sampan.report.model_charts import models_performance, models_progress

__all__ = [
    "PartySummary",
    "ReportSection",
    "RoundRecord",
    "RunReport",
    "render_run_report",
    "write_report",
]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_LOSS_KEYS = ("loss", "log_loss", "train_loss")
_CARD_HINTS = {True: "higher is better", False: "lower is better"}


def _section(title: str, body: str, lede: str = "", anchor: str = "") -> str:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    lede_html = f'<p class="lede">{esc(lede)}</p>' if lede else ""
    return f"<section{ident}><h2>{esc(title)}</h2>{lede_html}{body}</section>"


def _table(headers: list[str], rows: Iterable[list[str]], numeric_from: int = 1) -> str:
    """Cells are pre-rendered HTML (a cell may be a full <td>); later columns are right-aligned."""

    def cell(tag: str, index: int, content: str) -> str:
        if content.startswith("<td"):
            return content
        align = ' class="num"' if index >= numeric_from else ""
        return f"<{tag}{align}>{content}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _empty(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'


def _badge(status: str) -> str:
    low = status.lower()
    if low in {"completed", "complete", "succeeded", "success", "passed", "ok", "finished", "done"}:
        kind = "ok"
    elif low in {"failed", "failure", "error", "errored", "aborted", "cancelled", "canceled", "budget_exceeded"}:
        kind = "bad"
    elif low in {"running", "pending", "queued", "started", "in_progress"}:
        kind = "run"
    else:
        kind = "other"
    return f'<span class="badge {kind}">{esc(status or "unknown")}</span>'


def _header(report: RunReport) -> str:
    meta = [f"<span>Run <code>{esc(report.run_id)}</code></span>"]
    if report.created_at:
        meta.append(f"<span>{esc(report.created_at)}</span>")
    if report.parties:
        meta.append(f"<span>{len(report.parties)} parties</span>")
    if report.rounds:
        meta.append(f"<span>{len(report.rounds)} rounds</span>")
    return (
        '<header class="top"><div><p class="brand">Sampan · Run report</p>'
        f'<h1>{esc(report.title)}</h1><p class="meta">{"".join(meta)}</p></div>'
        f"<div>{_badge(report.status)}</div></header>"
    )


def _cards(metrics: Mapping[str, Any]) -> str:
    if not metrics:
        return ""
    cards = []
    for key in ordered_keys(metrics):
        hint = _CARD_HINTS.get(higher_is_better(key), "")  # type: ignore[arg-type]
        cards.append(
            f'<div class="card"><p class="label">{esc(metric_name(key))}</p>'
            f'<p class="value">{esc(fmt_metric(key, metrics[key]))}</p>'
            f'<p class="hint">{esc(hint) if hint else "&#160;"}</p></div>'
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _signed(observed: Any, predicted: Any) -> str:
    a, b = _as_float(observed), _as_float(predicted)
    return "—" if a is None or b is None else f"{a - b:+.4f}"


def _results(report: RunReport) -> str:
    columns: list[tuple[str, Mapping[str, Any]]] = [(report.primary_name, report.final_metrics)]
    columns += [(str(name), values) for name, values in report.baselines.items()]
    keys = ordered_keys(k for _, values in columns for k in values)
    if not keys:
        return _section("Results", _empty("No metrics were recorded for this run."), anchor="results")
    rows = []
    for key in keys:
        direction = higher_is_better(key)
        numbers = [_as_float(values.get(key)) for _, values in columns]
        present = [n for n in numbers if n is not None]
        best = None
        if direction is not None and len(present) > 1:
            best = max(present) if direction else min(present)
        row = [esc(metric_name(key))]
        for (_, values), number in zip(columns, numbers, strict=True):
            text = esc(fmt_metric(key, values.get(key)))
            row.append(f'<td class="num best">{text}</td>' if best is not None and number == best else text)
        rows.append(row)
    headers = ["Metric"] + [esc(name) for name, _ in columns]
    lede = "Final model on the held-out data"
    lede += ", next to the baselines; best value in bold." if report.baselines else "."
    return _section("Results", _table(headers, rows), lede, anchor="results")


def _roc_and_calibration(report: RunReport) -> str:
    auc = _as_float(report.final_metrics.get("auc"))
    if report.roc is not None:
        fpr, tpr = report.roc
        roc_svg = svg.roc_chart({"Federated model": (list(fpr), list(tpr))},
                                aucs={"Federated model": auc} if auc is not None else None)
    else:
        roc_svg = svg.roc_chart({}, title="ROC curve")
    cal: CalibrationLike | None = report.calibration
    if cal is not None:
        mean_p, frac, counts = list(cal.mean_predicted), list(cal.fraction_positive), list(cal.counts)
        cal_svg = svg.calibration_chart(mean_p, frac, counts, title="Calibration")
        rows = [
            [str(i + 1), fmt_metric("mean_predicted", m), fmt_metric("fraction_positive", f), _signed(f, m),
             fmt_metric("count", c)]
            for i, (m, f, c) in enumerate(zip(mean_p, frac, counts, strict=True))
        ]
        table = _table(["Bin", "Mean predicted", "Observed rate", "Gap", "Count"], rows)
        cal_table = f"<h3>Calibration by bin</h3>{table}"
    else:
        cal_svg = svg.calibration_chart([], [], [], title="Calibration")
        cal_table = ""
    body = f'<div class="grid2"><figure>{roc_svg}</figure><figure>{cal_svg}</figure></div>{cal_table}'
    return _section(
        "Discrimination and calibration", body,
        "How well the model ranks good and bad outcomes, and whether predicted probabilities match observed rates.",
        anchor="performance",
    )


def _party_order(report: RunReport) -> list[str]:
    names = [p.name for p in report.parties]
    for record in report.rounds:
        names.extend(record.party_metrics)
    return list(dict.fromkeys(names))


def _metric_series(report: RunReport, key: str, global_name: str) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {global_name: []}
    for name in _party_order(report):
        series[name] = []
    for record in report.rounds:
        value = _as_float(record.global_metrics.get(key))
        if value is not None:
            series[global_name].append((float(record.round), value))
        for name, metrics in record.party_metrics.items():
            value = _as_float(metrics.get(key))
            if value is not None:
                series[name].append((float(record.round), value))
    return {name: pts for name, pts in series.items() if pts}


def _progress(report: RunReport) -> str:
    if not report.rounds:
        return _section("Training progress", _empty("No training rounds were recorded."), anchor="progress")
    global_name = "Global model"
    while global_name in _party_order(report):
        global_name += " (aggregate)"
    charts = [svg.line_chart(_metric_series(report, "auc", global_name), title="AUC per round",
                             x_label="Round", y_label="AUC", highlight=global_name, integer_x=True,
                             width=520, height=380)]
    present = {k for r in report.rounds for k in r.global_metrics}
    present |= {k for r in report.rounds for m in r.party_metrics.values() for k in m}
    loss_key = next((k for k in _LOSS_KEYS if k in present), None)
    if loss_key is not None:
        charts.append(svg.line_chart(_metric_series(report, loss_key, global_name),
                                     title=f"{metric_name(loss_key)} per round", x_label="Round",
                                     y_label=metric_name(loss_key), highlight=global_name, integer_x=True,
                                     width=520, height=380))
    figures = "".join(f"<figure>{c}</figure>" for c in charts)
    grid = f'<div class="grid2">{figures}</div>' if len(charts) > 1 else figures
    keys = ordered_keys(k for r in report.rounds for k in r.global_metrics)
    rows = [
        [str(r.round), fmt_seconds(r.seconds)] + [esc(fmt_metric(k, r.global_metrics.get(k))) for k in keys]
        for r in report.rounds
    ]
    table = _table(["Round", "Time"] + [esc(metric_name(k)) for k in keys], rows)
    open_attr = ' open="open"' if len(rows) <= 10 else ""
    details = f"<details{open_attr}><summary>Global metrics by round</summary>{table}</details>"
    return _section("Training progress", grid + details,
                    "The global model (dark line) and each party's view of it after every round.", anchor="progress")


def _parties(parties: list[PartySummary]) -> str:
    if not parties:
        return _section("Parties", _empty("No party information was recorded."), anchor="parties")
    chart = svg.bar_chart({p.name: [p.n_train, p.n_test] for p in parties}, title="Rows per party",
                          y_label="Rows", series_labels=["Train", "Test"], width=520, height=340)
    total = sum(p.n_train + p.n_test for p in parties) or 1
    rows = [
        [esc(p.name), f"{p.n_train:,}", f"{p.n_test:,}", esc(fmt_metric("positive_rate", p.positive_rate)),
         f"{100 * (p.n_train + p.n_test) / total:.1f}%"]
        for p in parties
    ]
    table = _table(["Party", "Train", "Test", "Pos. rate", "Share"], rows)
    body = f'<div class="grid2"><figure>{chart}</figure><div>{table}</div></div>'
    return _section("Parties", body, "Rows each party used locally; the rows themselves never left the party.",
                    anchor="parties")


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.extend(_flatten(value, name + "."))
        else:
            items.append((name, value))
    return items


def _config(config: Mapping[str, Any]) -> str:
    if not config:
        return _section("Configuration", _empty("No configuration was recorded."), anchor="config")
    rows = []
    for key, value in _flatten(config):
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        rows.append([f'<td class="key">{esc(key)}</td>', f'<td class="val">{esc(text)}</td>'])
    raw = json.dumps(config, indent=2, default=str, ensure_ascii=False)
    body = (
        _table(["Setting", "Value"], rows, numeric_from=99)
        + f"<details><summary>Raw JSON</summary><pre>{esc(raw)}</pre></details>"
    )
    return _section("Configuration", body, anchor="config")


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{esc(note)}</li>" for note in notes)
    return _section("Notes", f'<ul class="notes">{items}</ul>', anchor="notes")


def _extra(sections: list[ReportSection]) -> str:
    return "".join(f"<section><h2>{esc(s.title)}</h2>{s.html}</section>" for s in sections)


def render_run_report(report: RunReport) -> str:
    """The whole report as one HTML string: inline CSS and SVG, no scripts, no external URLs."""
    body = "".join([
        _header(report),
        _cards(report.final_metrics),
        _results(report),
        *((models_performance(report.models), models_progress(report.models)) if report.models
          else (_roc_and_calibration(report), _progress(report))),
        _parties(report.parties),
        _config(report.config),
        _notes(report.notes),
        _extra(report.sections),
        f"<footer>Generated by Sampan {esc(__version__)}. Raw records never left their owners; "
        "this page shows aggregates only.</footer>",
    ])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"/>'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f'<meta name="generator" content="sampan {esc(__version__)}"/>'
        f"<title>{esc(report.title)} · {esc(report.run_id)}</title>"
        f"<style>{CSS}</style></head>"
        f'<body><div class="page">{body}</div></body></html>\n'
    )


def write_report(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Render and write the report atomically: readers see the old file or the new one, never half.

    The page goes to a temporary file in the target directory (same filesystem), is flushed to disk,
    then renamed over the target with os.replace. Parent directories are created.
    """
    content = render_run_report(report).encode("utf-8")  # render first: a failure leaves no debris
    return atomic_write_bytes(path, content)
