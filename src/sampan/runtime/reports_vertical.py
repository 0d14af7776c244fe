"""The vertical run's report sections, built from what the store holds (the workflow's stored info).

`build_vertical_report(store, run_id)` is the builder `sampan.runtime.reporting` registers for the
"vertical" workflow; the privacy receipt beside the report comes from the generic receipt builder
(the workflow's info carries its terms under "receipt"). Everything here was released by a party in a
reply (the bank's metrics and IV report, each party's own scorecard rows): scores of applications are
not (they stay with the bank), only how many there were.
"""

from __future__ import annotations

from html import escape
from typing import Any

from sampan.report import ReportSection, RunReport
from sampan.report.content import importance_section
from sampan.runtime.reporting import build_run_report
from sampan.runtime.store import Store

__all__ = ["build_vertical_report", "vertical_sections"]


def _traffic_rows(traffic: list[dict[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{escape(t['party'])}</td><td>{escape(t['kind'])}</td><td>{t['messages']:,}</td>"
                   f"<td>{t['bytes']:,}</td></tr>" for t in traffic if t["direction"] == "sent")
    return ("<table><thead><tr><th>party</th><th>message</th><th>count</th><th>bytes</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def vertical_sections(info: dict[str, Any], reveals: dict[str, Any], *, deployed: bool = False) -> list[ReportSection]:
    """Alignment, what each party learned, the model comparison, the scorecard, the scoring count. `deployed`:
    parties were agents with their own stores (a simulation's parties all register in the run store)."""
    alignment, training = info.get("alignment") or {}, info.get("training") or {}
    pairwise = alignment.get("pairwise") or {}
    sections = [
        ReportSection("Entity alignment (PSI)", (
            f"<p>{alignment.get('n_aligned', 0):,} customers are common to all parties. "
            f"{escape(str(alignment.get('reveals', '')))}</p>"
            + (f"<p>Pairwise intersections with the label holder: "
               f"{escape(', '.join(f'{k}: {v:,}' for k, v in pairwise.items()))}.</p>" if pairwise else ""))),
        ReportSection("What each party learned", (
            f"<p>{escape(str(training.get('reveals', '')))}</p><p>{escape(str(reveals.get('scoring', '')))}</p>"
            f"<p>{escape(str(reveals.get('summary', '')))}</p>"
            f"<p>Training ran {training.get('epochs_run', 0)} epochs (best: {training.get('best_epoch', 0)}), "
            f"{training.get('waves_per_batch', 0)} message waves per minibatch. Messages each party sent "
            "(every party-to-party payload sealed end to end; the coordinator relays ciphertext):</p>"
            + _traffic_rows(info.get("traffic") or []))),
    ]
    comparison = info.get("comparison") or {}
    if len(comparison) > 2:
        rows = "".join(f"<tr><td>{escape(k)}</td>" + "".join(
            f"<td>{float(m.get(c, float('nan'))):.4f}</td>" for c in ("auc", "gini", "ks", "brier")) + "</tr>"
            for k, m in comparison.items())
        sections.append(ReportSection("Model comparison (same held-out rows)", (
            "<table><thead><tr><th>model</th><th>AUC</th><th>Gini</th><th>KS</th><th>Brier</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            + "".join(f"<p>{escape(str(t))}</p>" for t in (info.get("extra_reveals") or {}).values()))))
    if info.get("gbdt_importance"):  # partner features under their names, as the scorecard and IV show them
        sections.append(importance_section("vertical GBDT", info["gbdt_importance"], (
            "Each feature's share of the total split gain, computed by the bank from the histograms it decoded "
            "(noised when partner histograms are noised); partner features appear under their names, as in the "
            "scorecard.")))
    card = info.get("scorecard") or []
    if card:
        rows = "".join(f"<tr><td>{escape(r['party'])}</td><td>{escape(r['feature'])}</td><td>{escape(r['bin'])}</td>"
                       f"<td>{'' if r['woe'] is None else format(r['woe'], '+.3f')}</td><td>{r['points']:.1f}</td></tr>"
                       for r in card)
        ivs = "; ".join(f"{escape(p)}: " + ", ".join(f"{escape(f)} {v:.3f}" for f, v in sorted(
            d.items(), key=lambda x: -x[1])[:6]) for p, d in (info.get("iv") or {}).items())
        sections.append(ReportSection("Scorecard (600 points at 50:1 odds, 20 points to double)", (
            "<p>Each party released its own rows of this table for the report. Points add up to the score; higher "
            f"is safer.</p><p>Information value (the bank's report, top features): {ivs}</p>"
            "<table><thead><tr><th>party</th><th>feature</th><th>bin</th><th>WOE</th><th>points</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")))
    scored = info.get("scored") or {}
    if scored.get("n"):
        sections.append(ReportSection("Scored applications", (
            f"<p>{int(scored['n'])} applications were scored jointly. The scores stay with "
            f"{escape(str(scored.get('kept_by', 'the bank')))} (in its own registry); the coordinator never sees "
            "them.</p>" + ("" if deployed else
                           "<p>This was a simulation: one process played every party, and every party's registry was "
                           "this run store, so the bank's scores and each party's model part are stored here side "
                           "by side. In a deployment each organisation registers them in its own store.</p>"))))
    return sections


def build_vertical_report(store: Store, run_id: str) -> RunReport:
    """The generic run report plus the vertical sections, titled by the run's name."""
    run = store.get_run(run_id)
    info = run.info or {}
    vertical = info.get("vertical") or {}
    deployed = "deploy" in (run.config or {})  # a submitted run's stored config carries its [deploy] section
    report = build_run_report(store, run_id, sections=vertical_sections(
        vertical, dict((info.get("receipt") or {}).get("reveals") or {}), deployed=deployed))
    report.title = f"{run.name} — secure vertical federated learning"
    return report
