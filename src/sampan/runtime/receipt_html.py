"""The privacy receipt rendered as a report section (HTML): per-party epsilon and traffic, catalogue, audit.

Kept apart from the receipt's assembly (`sampan.runtime.receipt`): the receipt is data (JSON, regenerated
from the store at any time); this module only presents it, escaping every value it prints.
"""

from __future__ import annotations

from html import escape
from typing import Any

from sampan.report import ReportSection


def _audit_html(audit: dict[str, Any] | None) -> str:
    if not audit:
        return "<p><b>Membership audit:</b> not run (<code>sampan audit RUN_ID</code>).</p>"
    rows = "".join(
        f"<tr><td>{escape(a['name'])}</td><td>{a['auc']:.3f}</td><td>{float(a['tpr_at_fpr'].get('0.01', 0)):.4f}</td>"
        f"<td>{float(a['tpr_at_fpr'].get('0.001', 0)):.4f}</td>"
        f"<td>{escape(str(a['epsilon_lower_bound_ci95'][0]))[:6]}</td></tr>"
        for a in audit["attacks"])
    target = audit.get("target", {})
    claimed = target.get("claimed_epsilon")
    return ("<p><b>Membership audit</b> (members: training rows, non-members: holdout rows; "
            f"claimed ε {format(claimed, '.3f') if claimed is not None else 'none (no DP)'}):</p>"
            "<table><thead><tr><th>attack</th><th>AUC</th><th>TPR @ 1% FPR</th><th>TPR @ 0.1% FPR</th>"
            f"<th>ε lower bound (95% conservative)</th></tr></thead><tbody>{rows}</tbody></table>")


def _catalogue_html(rows: list[dict[str, str]]) -> str:
    """Every field of every message, with its protection (the catalogue of `sampan.wire.catalogue`)."""
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(r['sender'])}</td><td>{escape(r['kind'])}</td>"
                   f"<td><code>{escape(r['field'])}</code>"
                   f"</td><td>{escape(r['description'])}</td></tr>" for r in rows)
    return ("<details><summary>Every message field and its protection</summary>"
            "<p>Sender: who sends it; the other side reads it.</p>"
            "<table><thead><tr><th>sender</th><th>message</th><th>field</th><th>protection</th></tr></thead>"
            f"<tbody>{body}</tbody></table></details>")


def receipt_section(receipt: dict[str, Any]) -> ReportSection:
    multipliers = receipt.get("noise_multipliers") or {}
    rows = []
    for party, entry in sorted(receipt["parties"].items()):
        spent = entry.get("epsilon_spent")
        levels = entry.get("epsilon_by_level") or {}
        budget = entry.get("budget") or {}
        by_level = ", ".join(f"{lvl} {levels.get(lvl, 0):.3f}" for lvl in ("DP1", "DP2", "DP3"))
        z2 = entry.get("dp2_noise_multiplier")
        eps = (f"{spent:.3f} of {budget.get('epsilon')} ({by_level})"
               + (f"; DP2 noise multiplier {z2:.3g}" if z2 is not None else "")
               if spent is not None else "no DP: not accounted")
        sent = "<br>".join(f"{escape(s['kind'])}: {s['messages']} msgs, {s['bytes']:,} B — {escape(s['protection'])}"
                           for s in entry["sent"])
        rows.append(f"<tr><td>{escape(party)}</td><td>{escape(eps)}</td><td>{sent}</td></tr>")
    stop = receipt.get("budget_stop")
    html = (
        f"<p><b>Unit of privacy:</b> {escape(str(receipt['unit_of_privacy']))} "
        f"({escape(str(receipt['neighbouring_relation']))}); <b>accountant:</b> {escape(str(receipt['accountant']))}; "
        f"<b>δ:</b> {escape(str(receipt['delta']))}; <b>noise multipliers:</b> "
        f"{escape(', '.join(f'{k} {v:.3g}' for k, v in multipliers.items()) or 'none')}.</p>"
        + (f"<p><b>Budget stop:</b> {escape(stop)}</p>" if stop else "")
        + "<details><summary>What each party sent, message by message, and its ε</summary>"  # folded: raw tables
        "<table><thead><tr><th>party</th><th>ε spent (of budget)</th><th>what it sent, under which protection</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
        + (f"<p><b>Evaluation.</b> {escape(str(receipt['evaluation']))}</p>" if receipt.get("evaluation") else "")
        + _catalogue_html(receipt.get("messages") or [])
        + _audit_html(receipt.get("membership_audit"))
        + "".join(f"<p><b>What is revealed ({escape(str(step))}).</b> {escape(str(text))}</p>"
                  for step, text in (receipt.get("reveals") or {}).items())
        + f"<p><b>Threat model.</b> {escape(receipt['threat_model'])}</p>"
        f"<p><b>Randomness.</b> {escape(receipt['randomness'])}</p>"
    )
    return ReportSection("Privacy receipt", html)
