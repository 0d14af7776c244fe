"""Two evaluations side by side as one HTML page: per test both verdicts and figures, changes highlighted.

Typical uses: the same platform before and after a change, or two platforms on the same profile (the
docs table of issue 16). Tests are matched by id; a test in only one of them is "only in A"/"only in B".
"""

from __future__ import annotations

import os
from pathlib import Path

from sampan.files import atomic_write_text
from sampan.report._svg_base import esc
from sampan.verify.report._common import clean, fmt_number, overall
from sampan.verify.report.html import badge, page, table
from sampan.verify.results import Evaluation, Outcome

__all__ = ["Change", "changes", "render_comparison", "render_matrix", "write_comparison"]

Change = tuple[str, Outcome | None, Outcome | None, str]  # (id, in A, in B, status)


def _label(ev: Evaluation) -> str:
    t = ev.target
    return clean(f"{t.platform or t.url} {t.platform_version}".strip())


def _figures_differ(a: Outcome, b: Outcome) -> bool:
    for key in set(a.figures) | set(b.figures):
        x, y = a.figures.get(key), b.figures.get(key)
        if (x is None) != (y is None):
            return True
        if x is not None and y is not None and abs(x - y) > 1e-9 * max(1.0, abs(x), abs(y)):
            return True
    return False


def changes(a: Evaluation, b: Evaluation) -> list[Change]:
    """Every test id of either evaluation, in A's order then B's new ones, with its status:
    "changed" (verdict differs), "figures" (same verdict, other figures), "same", "only in A", "only in B"."""
    in_a = {o.id: o for o in a.outcomes}
    in_b = {o.id: o for o in b.outcomes}
    out: list[Change] = []
    for test_id in dict.fromkeys([*in_a, *in_b]):
        x, y = in_a.get(test_id), in_b.get(test_id)
        if x is None:
            status = "only in B"
        elif y is None:
            status = "only in A"
        elif x.verdict != y.verdict:
            status = "changed"
        else:
            status = "figures" if _figures_differ(x, y) else "same"
        out.append((test_id, x, y, status))
    return out


def _figures(x: Outcome | None, y: Outcome | None) -> str:
    keys = list(dict.fromkeys([*(x.figures if x else {}), *(y.figures if y else {})]))
    lines = []
    for key in keys:
        va = x.figures.get(key) if x else None
        vb = y.figures.get(key) if y else None
        delta = f" ({vb - va:+.4g})" if va is not None and vb is not None and va != vb else ""
        lines.append(f'<span class="key">{esc(clean(key))}</span>: {esc(fmt_number(va))} → '
                     f"{esc(fmt_number(vb))}{esc(delta)}")
    return "<br/>".join(lines) or "—"


def render_comparison(a: Evaluation, b: Evaluation) -> str:
    """The comparison page (self-contained HTML, same style as the report)."""
    la, lb = _label(a), _label(b)
    rows, classes = [], []
    diff = changes(a, b)
    for test_id, x, y, status in diff:
        title = (x or y).title if (x or y) else ""  # type: ignore[union-attr]
        rows.append([esc(clean(test_id)), esc(clean(title)), badge(x.verdict) if x else "—",
                     badge(y.verdict) if y else "—", esc(status), _figures(x, y)])
        classes.append("changed" if status in {"changed", "only in A", "only in B"} else "")
    n_changed = sum(1 for *_, s in diff if s == "changed")
    head = []
    for tag, ev, label in (("A", a, la), ("B", b, lb)):
        c = ev.counts()
        head.append([esc(tag), esc(label), esc(clean(ev.profile)), esc(clean(ev.started)), badge(overall(ev)),
                     esc(f"{c['pass']} pass · {c['fail']} fail · {c['skip']} skip · {c['error']} error")])
    body = (
        '<header class="top"><div><p class="brand">Sampan · Verification comparison</p>'
        f"<h1>{esc(la)} vs {esc(lb)}</h1>"
        f'<p class="meta"><span>{n_changed} verdict(s) changed</span><span>{len(diff)} tests</span></p></div></header>'
        + "<section><h2>Evaluations</h2>"
        + table(["", "Platform", "Profile", "Started", "Overall", "Verdicts"], head) + "</section>"
        + "<section><h2>Per test</h2><p class=\"lede\">Rows whose verdict changed, or that ran in only one "
        "evaluation, are highlighted; figures read A → B (difference).</p>"
        + table(["Id", "Test", "A", "B", "Change", "Figures"], rows, classes) + "</section>"
    )
    return page(f"Comparison: {la} vs {lb}", body)


def write_comparison(a: Evaluation, b: Evaluation, path: str | os.PathLike[str]) -> Path:
    """Render, then write atomically (nothing half-written)."""
    return atomic_write_text(path, render_comparison(a, b))


_MARK = {"pass": "pass", "fail": "**FAIL**", "skip": "skip", "error": "*error*"}


def _md(text: str) -> str:
    return clean(text).replace("|", "\\|").replace("\n", " ")


def render_matrix(evaluations: list[Evaluation]) -> str:
    """Test id x platform as a Markdown table (for docs/verification): one verdict per cell."""
    names = [_label(ev) or f"#{i + 1}" for i, ev in enumerate(evaluations)]
    ids: dict[str, str] = {}
    for ev in evaluations:
        for o in ev.outcomes:
            ids.setdefault(o.id, o.title)
    lines = ["| Id | Test | " + " | ".join(_md(n) for n in names) + " |", "|---|---|" + "---|" * len(names)]
    for test_id, title in ids.items():
        cells = []
        for ev in evaluations:
            found = next((x for x in ev.outcomes if x.id == test_id), None)
            cells.append("—" if found is None else _MARK.get(found.verdict, found.verdict))
        lines.append(f"| {_md(test_id)} | {_md(title)} | " + " | ".join(cells) + " |")
    profiles = ", ".join(sorted({clean(ev.profile) for ev in evaluations}))
    lines.append("")
    lines.append(f"Profile: {_md(profiles)}. " + "; ".join(
        f"{_md(n)}: {ev.counts()['pass']} pass, {ev.counts()['fail']} fail, {ev.counts()['skip']} skip, "
        f"{ev.counts()['error']} error ({_md(ev.started)})" for n, ev in zip(names, evaluations, strict=True)) + ".")
    return "\n".join(lines) + "\n"
