"""The checks' outcome for people and machines: a text block (`sampan run`), an HTML report section, JSON.

All three are read from the run's info (``info["checks"]``, written by `ChecksWorkflow`), so they can be rebuilt
from the store at any time; nothing here sees a row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from sampan.report import ReportSection

__all__ = ["checks_html", "checks_json", "checks_text", "report_sections"]

_ORDER = {"error": 0, "warning": 1, "info": 2}


def _findings(out: Mapping[str, Any], *, with_info: bool = True) -> list[Mapping[str, Any]]:
    found = [f for f in out.get("findings") or () if with_info or f.get("severity") != "info"]
    return sorted(found, key=lambda f: (_ORDER.get(str(f.get("severity")), 3), str(f.get("check")),
                                        str(f.get("party")), str(f.get("column"))))


def checks_json(out: Mapping[str, Any]) -> str:
    """Machine-readable: the whole outcome (findings with check, severity, party, column, value, threshold)."""
    return json.dumps(out, indent=2, sort_keys=True, default=str)


def checks_text(out: Mapping[str, Any]) -> str:
    """What `sampan run` prints: the verdict, then one line per error and warning (info lines counted)."""
    found = _findings(out, with_info=False)
    infos = sum(1 for f in out.get("findings") or () if f.get("severity") == "info")
    verdict = "passed" if out.get("passed") else "FAILED (errors below)"
    lines = [f"Checks {verdict}: {sum(f['severity'] == 'error' for f in found)} errors, "
             f"{sum(f['severity'] == 'warning' for f in found)} warnings, {infos} notes"]
    for f in found:
        where = ", ".join(x for x in (f"party {f['party']}" if f.get("party") else "",
                                      f"column {f['column']}" if f.get("column") else "") if x)
        lines.append(f"  {str(f['severity']).upper():7} {f['check']:8} {where}: {f['message']}")
    if out.get("dp"):
        lines.append("  (label counts, histograms and overlap counts are Laplace-noised: values are approximate)")
    return "\n".join(lines)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th scope='col'>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def checks_html(out: Mapping[str, Any]) -> str:
    """The report section: verdict, findings, label balance, drift (PSI per party and column), overlap."""
    parts = [f"<p><strong>{'Passed' if out.get('passed') else 'Failed'}</strong>"
             + (" — values are Laplace-noised (DP)" if out.get("dp") else " — exact values (no DP)") + "</p>"]
    found = _findings(out)
    if found:
        parts.append("<h3>Findings</h3>" + _table(
            ["Severity", "Check", "Party", "Column", "Value", "Threshold", "Message"],
            [[f.get("severity"), f.get("check"), f.get("party"), f.get("column"), f.get("value"), f.get("threshold"),
              f.get("message")] for f in found]))
    label = out.get("label") or {}
    if label:
        parts.append("<h3>Label balance</h3>" + _table(
            ["Party", "Rows", "Positives", "Positive rate"],
            [[p, v.get("rows"), v.get("positives"), v.get("positive_rate")] for p, v in sorted(label.items())]))
    drift = out.get("drift") or {}
    psi = drift.get("psi") or {}
    if psi:
        columns = [str(c[0]) for c in drift.get("columns") or ()]
        parts.append("<h3>Drift between parties (PSI against the pooled others)</h3>" + _table(
            ["Party", *columns], [[p, *(values.get(c) for c in columns)] for p, values in sorted(psi.items())]))
    overlap = out.get("overlap") or {}
    if overlap:
        parts.append("<h3>Id overlap with the label holder (PSI cardinality mode)</h3>" + _table(
            ["Partner", "Ids in common", "Fraction of the label holder's ids"],
            [[p, v.get("count"), v.get("fraction_of_label_holder")]
             for p, v in sorted((overlap.get("partners") or {}).items())]))
    return "\n".join(parts)


def report_sections(store: Any, run_id: str) -> list[ReportSection]:
    """The report builder registered for the checks workflow (`sampan.runtime.reporting.REPORT_BUILDERS`)."""
    out = (store.get_run(run_id).info or {}).get("checks")
    if not out:
        return []
    return [ReportSection("Checks before training", checks_html(out))]
