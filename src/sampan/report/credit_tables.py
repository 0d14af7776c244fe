"""Report sections a credit validator reads: the decision threshold, the score-band table, fairness by group.

Built from a run's stored info (``decision``, ``score_bands``, ``groups``: `sampan.horizontal.decision` and
`sampan.horizontal.group_evaluation`), so a report can be regenerated from the store alone. Never prints
``nan``: undefined figures show as a dash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from sampan.report.content import ReportSection

__all__ = ["credit_sections"]

_RULES = {"max_ks": "maximum KS", "approval_rate": "target approval rate", "cost_ratio": "cost ratio (bad approved : "
          "good declined)"}


def _num(value: Any, digits: int = 4, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if percent:
        return f"{100 * float(value):.1f}%"
    return f"{float(value):.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _decision(decision: Mapping[str, Any]) -> ReportSection:
    c = decision["confusion"]
    rule = _RULES.get(str(decision["rule"]), str(decision["rule"]))
    parameter = f" ({_num(decision['parameter'], 3)})" if decision.get("parameter") is not None else ""
    html = (f"<p>Rule: {escape(rule)}{escape(parameter)}, chosen on the pooled validation (holdout) score histogram "
            f"({int(decision.get('bins') or 0)} bins). Threshold: PD &ge; <b>{_num(decision['threshold'])}</b> is "
            f"declined; approval rate {_num(decision['approval_rate'], percent=True)}. The registered model "
            "carries this threshold, so scoring approves and declines alike.</p>"
            + _table(["", "declined (predicted bad)", "approved (predicted good)"],
                     [["bad (label 1)", _num(c["tp"]), _num(c["fn"])],
                      ["good (label 0)", _num(c["fp"]), _num(c["tn"])]])
            + _table(["precision", "recall", "F1"],
                     [[_num(decision["precision"]), _num(decision["recall"]), _num(decision["f1"])]]))
    return ReportSection("Decision threshold", html)


def _bands(bands: Sequence[Mapping[str, Any]]) -> ReportSection:
    rows = [[str(b["band"]), f"{_num(b['score_low'], 3)}–{_num(b['score_high'], 3)}", _num(b["count"]),
             _num(b["bads"]), _num(b["bad_rate"], percent=True), _num(b["cumulative_bad_capture"], percent=True),
             _num(b["lift"], 2), _num(b["ks"], 3)] for b in bands]
    html = ("<p>Holdout rows in about ten equal bands by score, riskiest first (bands follow the histogram's bins, so "
            "a bin is never split). Cumulative capture: share of all bads in this band and the riskier ones.</p>"
            + _table(["band", "PD range", "count", "bads", "bad rate", "cum. bad capture", "lift", "KS"], rows))
    return ReportSection("Score bands (deciles)", html)


def _groups(groups: Mapping[str, Any]) -> ReportSection:
    rows = [[escape(str(r["column"])), escape(str(r["level"])),
             "suppressed" if r["suppressed"] else _num(r["count"]), _num(r["bad_rate"], percent=True),
             _num(r["auc"]), _num(r["approval_rate"], percent=True)] for r in groups.get("rows") or []]
    summary = [[escape(column), _num(d.get("ratio"), 2), escape(str(d.get("highest") or "–")),
                escape(str(d.get("lowest") or "–"))] for column, d in (groups.get("disparity") or {}).items()]
    html = (f"<p>Per group at the decision threshold ({_num(groups.get('threshold'))}). "
            f"{escape(str(groups.get('note') or ''))}</p>"
            + _table(["column", "group", "holdout rows", "bad rate", "AUC", "approval rate"], rows)
            + "<p>Disparity: highest over lowest approval rate among the groups shown.</p>"
            + _table(["column", "max/min approval", "highest", "lowest"], summary))
    return ReportSection("Fairness by group", html)


def credit_sections(info: Mapping[str, Any]) -> list[ReportSection]:
    """The sections a run's info supports (none when it holds no decision)."""
    sections = []
    if info.get("decision"):
        sections.append(_decision(info["decision"]))
    if info.get("score_bands"):
        sections.append(_bands(info["score_bands"]))
    if info.get("groups"):
        sections.append(_groups(info["groups"]))
    return sections
