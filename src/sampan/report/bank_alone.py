"""The "each bank alone vs the consortium" table (issue 13, item 6), for the run report and the CLI.

Built from the run info `sampan.horizontal.local_comparison.compare_banks` stores: per bank, the AUC of its
local-only model and of the consortium model, both on that bank's own holdout rows (computed at the bank).
"""

from __future__ import annotations

from html import escape
from typing import Any

from sampan.report.content import ReportSection

__all__ = ["bank_alone_rows", "bank_alone_section"]

HEADERS = ("bank", "holdout rows", "AUC alone", "AUC consortium", "gain")


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None:
        return "n/a (one class)"
    return f"{float(value):+.4f}" if signed else f"{float(value):.4f}"


def bank_alone_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(bank, holdout rows, AUC alone, AUC consortium, gain) as text; never 'nan'."""
    return [(bank, "–", str(row["unavailable"]), "–", "n/a") if row.get("unavailable") else
            (bank, str(row["n_holdout"]), _fmt(row["local_auc"]), _fmt(row["consortium_auc"]),
             _fmt(row["gain"], signed=True) if row["gain"] is not None else "n/a")
            for bank, row in sorted((summary.get("banks") or {}).items())]


def bank_alone_section(summary: dict[str, Any]) -> ReportSection:
    """What each bank gains from the consortium, measured where its data lives."""
    if summary.get("skipped"):
        return ReportSection("Each bank alone vs the consortium",
                             f"<p>Not computed: {escape(str(summary['skipped']))}</p>")
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in bank_alone_rows(summary))
    dp = (" Under differential privacy each bank trained its local-only model with DP-SGD, charged to its budget."
          if summary.get("dp") else "")
    html = (f"<p>Each bank trained a model on its own training rows alone ({int(summary.get('epochs') or 0)} local "
            "epochs) and scored it and the consortium model on its own holdout rows, at the bank; only the two "
            f"score histograms left the bank (per bank: secure aggregation cannot apply).{dp}</p>"
            "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in HEADERS) + "</tr></thead>"
            f"<tbody>{rows}</tbody></table>")
    return ReportSection("Each bank alone vs the consortium", html)
