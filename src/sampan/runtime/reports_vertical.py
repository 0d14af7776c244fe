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
from sampan.runtime.reports_vertical_models import finite, trained_models
from sampan.runtime.store import Store

__all__ = ["build_vertical_report", "vertical_sections"]


def _traffic_rows(traffic: list[dict[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{escape(t['party'])}</td><td>{escape(t['kind'])}</td><td>{t['messages']:,}</td>"
                   f"<td>{t['bytes']:,}</td></tr>" for t in traffic if t["direction"] == "sent")
    return ("<details><summary>Messages each party sent (every party-to-party payload sealed end to end; the "
            "coordinator relays ciphertext)</summary><table><thead><tr><th>party</th><th>message</th><th>count</th>"
            f"<th>bytes</th></tr></thead><tbody>{rows}</tbody></table></details>")


def _num(value: Any, spec: str = ".4f") -> str:
    """A metric for a table cell: formatted, or an en dash when absent or not finite (never nan)."""
    number = finite(value)
    return "–" if number is None else format(number, spec)


STABILITY_NOTE = (
    "Stability index (PSI): not computed for this run. The training, validation and test rows are drawn from one "
    "population at one time (by hash of the run seed and each customer's id), so a population stability index "
    "between them is near 0 by construction and says nothing about drift; it is computed by monitoring, against "
    "the scores of new applicants.")


def _comparison(info: dict[str, Any]) -> ReportSection | None:
    """Every model and the bank-alone baseline on the same held-out rows, trained models best first."""
    comparison = info.get("comparison") or {}
    if not comparison:
        return None
    order = [name for name, _, _ in trained_models(info)]
    names = order + [k for k in comparison if k not in order]
    rows = "".join(f"<tr><td>{escape(k)}</td>" + "".join(
        f"<td>{_num((comparison[k] or {}).get(c))}</td>" for c in ("auc", "gini", "ks", "brier")) + "</tr>"
        for k in names)
    return ReportSection("Model comparison (same held-out rows)", (
        "<p>Trained models are listed best first by held-out AUC (the only figure every model has on the same "
        "rows), then the bank's own-columns baseline.</p>"
        "<table><thead><tr><th>model</th><th>AUC</th><th>Gini</th><th>KS</th><th>Brier</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><p>{escape(STABILITY_NOTE)}</p>"
        + "".join(f"<p>{escape(str(t))}</p>" for k, t in (info.get("extra_reveals") or {}).items()
                  if k != "stability")))


def _scorecard(info: dict[str, Any]) -> ReportSection | None:
    """The scorecard rows each party released, with the validator's flags per feature."""
    card = info.get("scorecard") or []
    if not card:
        return None
    rows = "".join(f"<tr><td>{escape(r['party'])}</td><td>{escape(r['feature'])}</td><td>{escape(r['bin'])}</td>"
                   f"<td>{'' if r['woe'] is None else _num(r['woe'], '+.3f')}</td><td>{_num(r['points'], '.1f')}</td>"
                   f"<td>{escape(str(r.get('flag') or ''))}</td></tr>" for r in card)
    ivs = "; ".join(f"{escape(p)}: " + ", ".join(f"{escape(f)} {_num(v, '.3f')}" for f, v in sorted(
        d.items(), key=lambda x: -(finite(x[1]) or 0.0))[:6]) for p, d in (info.get("iv") or {}).items())
    flagged = sorted({f"{r['party']}: {r['feature']}" for r in card if r.get("flag")})
    check = ("Checked for every feature: its WOE is monotone in bin order and its points never rise with risk, so "
             "higher is safer." if not flagged else
             f"Higher is safer for every feature except those flagged in the last column ({len(flagged)}: "
             f"{', '.join(flagged)}).")
    return ReportSection("Scorecard (600 points at 50:1 odds, 20 points to double)", (
        "<p>Each party released its own rows of this table for the report. Points add up to the score. "
        f"{escape(check)}</p><p>Information value (the bank's report, top features): {ivs}</p>"
        "<details><summary>Points per bin</summary><table><thead><tr><th>party</th><th>feature</th><th>bin</th>"
        f"<th>WOE</th><th>points</th><th>flag</th></tr></thead><tbody>{rows}</tbody></table></details>"))


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
            f"<p>Secure LR ran {training.get('epochs_run', 0)} epochs (best: {training.get('best_epoch', 0)}), "
            f"{training.get('waves_per_batch', 0)} message waves per minibatch.</p>"
            + _traffic_rows(info.get("traffic") or []))),
    ]
    sections += [s for s in (_comparison(info),) if s is not None]
    if info.get("gbdt_importance"):  # partner features under their names, as the scorecard and IV show them
        sections.append(importance_section("vertical GBDT", info["gbdt_importance"], (
            "Each feature's share of the total split gain, computed by the bank from the histograms it decoded "
            "(noised when partner histograms are noised); partner features appear under their names, as in the "
            "scorecard.")))
    sections += [s for s in (_scorecard(info),) if s is not None]
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
    models = trained_models(vertical)
    report.title = f"{run.name} — secure vertical FL: " + (", ".join(name for name, _, _ in models) or "no model")
    report.rounds = []  # the stored rounds are stage checkpoints, not training rounds: curves come per model
    if models:
        best_name, best, _ = models[0]
        report.models = [curves for _, _, curves in models]
        report.primary_name = f"{best_name} (best)"
        report.final_metrics = {k: v for k in ("auc", "ks", "brier") if (v := finite(best.get(k))) is not None}
        others = {name: metrics for name, metrics, _ in models[1:]}
        report.baselines = {name: {k: v for k in ("auc", "ks", "brier") if (v := finite(m.get(k))) is not None}
                            for name, m in {**others, **dict(report.baselines)}.items()}
    return report
