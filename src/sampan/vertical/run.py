"""An end-to-end vertical run, recorded in the store: align, train, compare, score, report.

Used by ``sampan demo --vertical`` (the built-in consortium's bank, payment provider and delivery
platform) and by tests. Each party's model part is registered under its own name
(``<model>:<party>``): in a deployment each organisation keeps its own part in its own store; the
in-process simulation keeps them side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from sampan.data.table import PartyData
from sampan.report import ReportSection
from sampan.runtime.receipt import write_receipt
from sampan.runtime.reporting import build_run_report
from sampan.report import write_report
from sampan.runtime.store import Store
from sampan.vertical.model import LocalLinearPart
from sampan.vertical.scoring import REVEALS as SCORING_REVEALS
from sampan.vertical.scoring import ScoreResult
from sampan.vertical.secure_lr import REVEALS as SECURE_LR_REVEALS
from sampan.vertical.secure_lr import reveals as secure_lr_reveals
from sampan.vertical.session import VerticalSession, build_inprocess_vertical
from sampan.models.gbdt import GBDTParams
from sampan.models.scorecard import ScoreScaling, gini
from sampan.vertical.gbdt import REVEALS as GBDT_REVEALS
from sampan.vertical.gbdt import VIEWS as GBDT_VIEWS
from sampan.vertical.histograms import views_receipt
from sampan.vertical.gbdt import score_vertical_gbdt, train_vertical_gbdt
from sampan.vertical.training import VerticalLRConfig
from sampan.vertical.woe import REVEALS as WOE_REVEALS
from sampan.vertical.woe import VIEWS as WOE_VIEWS
from sampan.vertical.woe import federated_woe

__all__ = ["VerticalRunOutcome", "run_vertical", "load_parts", "score_with_parts", "score_with_gbdt", "TRAINING_REVEALS"]

TRAINING_REVEALS = SECURE_LR_REVEALS  # the default mode's receipt text (secure_lr.reveals); runs record their own

Progress = Callable[[str, Mapping[str, Any]], None]


@dataclass
class VerticalRunOutcome:
    run_id: str
    n_aligned: int
    alignment: dict[str, Any]
    training: dict[str, Any]
    joint: dict[str, Any]
    bank_only: dict[str, Any]
    scored: list[ScoreResult] = field(default_factory=list)
    model_name: str = ""
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)
    scorecard: list[dict[str, Any]] = field(default_factory=list)
    iv: dict[str, dict[str, float]] = field(default_factory=dict)
    report: Path | None = None
    seconds: float = 0.0


def run_vertical(
    datasets: Mapping[str, PartyData], *, label_holder: str, store: Store, name: str = "vertical-lr",
    config: VerticalLRConfig = VerticalLRConfig(), seed: int = 0, applicants: list[str] | None = None,
    report_dir: Path | None = None, progress: Progress | None = None, run_config: Mapping[str, Any] | None = None,
    models: tuple[str, ...] = ("lr",), gbdt_params: GBDTParams = GBDTParams(n_trees=60, max_depth=3),
    woe_dp_epsilon: float | None = None, gbdt_hist_noise: float = 0.0,
) -> VerticalRunOutcome:
    """PSI alignment, secure training, joint vs bank-only evaluation, scoring; everything recorded.

    `models` may add "scorecard" (federated WOE binning + secure LR on WOE features) and "gbdt"
    (vertical gradient-boosted trees) to the secure LR, all on the same rows, compared in one table.
    """
    started = time.perf_counter()
    say = progress or (lambda stage, info: None)
    partners = [p for p in datasets if p != label_holder]
    transport, parties = build_inprocess_vertical(datasets)
    run_id = store.create_run(name=name, workflow="vertical", seed=seed, total_rounds=config.epochs, config=dict(run_config or {
        "vertical": {"label_holder": label_holder, "partners": partners, "training": config.__dict__}}))
    store.set_status(run_id, "running")
    try:
        session = VerticalSession(transport, label_holder=label_holder, partners=partners, run_id=run_id,
                                  progress=lambda stage, info: say(stage, info))
        session.connect()
        say("stage", {"stage": "aligning customers by PSI"})
        outcome = session.align()
        alignment = _alignment_info(outcome)
        store.log_event(run_id, "aligned", {k: v for k, v in alignment.items() if k != "reveals"})
        splits = session.splits(seed=seed)  # the dataset's pinned partition where the parties have one
        say("stage", {"stage": "training secure vertical LR", "epochs": config.epochs})

        def on_epoch(stage: str, info: Mapping[str, Any]) -> None:
            if stage == "epoch":
                store.save_round(run_id, int(info["epoch"]), state_arrays={}, state_meta={},
                                 metrics={"global": {"val_brier": info["val_brier"]}}, seconds=info["seconds"])
            say(stage, info)

        session.progress = on_epoch
        result = session.train(splits, config, seed=seed)
        training = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                    "stopped_early": result.stopped_early, "features": result.features,
                    "mean_epoch_seconds": float(np.mean(result.epoch_seconds)),
                    "waves_per_batch": result.waves_per_batch, "shared_weights": bool(config.shared_weights),
                    "reveals": secure_lr_reveals(config.shared_weights)}
        say("stage", {"stage": "evaluating"})
        joint = session.evaluate(splits.test)
        bank_only = session.bank_only(splits, config, seed=seed)
        model_name = f"{name}"
        for party_name, party in parties.items():
            arrays, meta = party.lr.part.to_arrays()  # type: ignore[union-attr]
            store.register_model(f"{model_name}:{party_name}", run_id, arrays, meta)
        scored: list[ScoreResult] = []
        if applicants:
            say("stage", {"stage": f"scoring {len(applicants)} new applications"})
            for applicant in applicants:
                request = session.score([applicant])
                scored.extend(parties[label_holder].scoring.results[request])
        comparison = {f"{label_holder} alone (LR, own columns)": bank_only, "vertical LR (secure)": joint}
        scorecard_rows: list[dict[str, Any]] = []
        iv: dict[str, dict[str, float]] = {}
        extra_reveals: dict[str, str] = {}
        dp_accounts: dict[str, dict[str, Any]] = {}  # protocol -> party -> its noise account
        fields_seen: dict[str, list[dict[str, str]]] = {}  # protocol -> every field a role sees, with its protection
        if "scorecard" in models:
            say("stage", {"stage": "federated WOE binning and scorecard"})
            woe = federated_woe(transport, run_id, label_holder, partners, splits.train, dp_epsilon=woe_dp_epsilon)
            for p in parties:
                session.relay.wave(transport, [session.relay.request(p, "vertical.use_woe", meta={"on": True})])
            session.progress = say  # the run's rounds are the main LR's epochs
            session.train(splits, config, seed=seed)
            # stability against the secure LR's scores of the same test rows (the bank evaluates only the run's
            # test rows, each model once: validation rows are never evaluated)
            card_metrics = session.evaluate(splits.test, stability_against=joint["request_id"])
            comparison["vertical scorecard (WOE + secure LR)"] = card_metrics
            scaling = ScoreScaling()
            for p, party in parties.items():  # simulation: every party's own rows of the table, side by side
                scorecard_rows += party.lr.part.scorecard_rows(scaling, label_holder=(p == label_holder))  # type: ignore[union-attr]
                arrays, meta = party.lr.part.to_arrays()  # type: ignore[union-attr]
                store.register_model(f"{name}-scorecard:{p}", run_id, arrays, meta)
            iv = {p: dict(r["iv"]) for p, r in parties[label_holder].woe.report.items()}
            for p in parties:
                session.relay.wave(transport, [session.relay.request(p, "vertical.use_woe", meta={"on": False})])
            extra_reveals["stability"] = (f"Population stability index of the scorecard's test-batch scores against "
                                          f"the secure LR's scores of the same test rows: {card_metrics.get('psi', float('nan')):.4f} "
                                          "(< 0.1 stable, 0.1-0.25 watch, > 0.25 shifted).")
            extra_reveals["scorecard"] = WOE_REVEALS + (" DP on the counts: " + "; ".join(
                f"{p} epsilon = {v['epsilon']:.2f} (delta {v['delta']:g}, sigma {v['sigma']:.2f}): {v['protects']}"
                for p, v in woe["privacy"].items()) + "." if woe.get("privacy") else " No DP on the counts in this run: "
                "the bank sees exact partner counts.")
            dp_accounts["scorecard (federated WOE counts)"] = dict(woe.get("privacy") or {})
            fields_seen["federated WOE"] = views_receipt(WOE_VIEWS)
        if "gbdt" in models:
            say("stage", {"stage": "training vertical GBDT"})
            gb = train_vertical_gbdt(transport, run_id, label_holder, partners, splits.train, splits.val, gbdt_params,
                                     hist_noise=gbdt_hist_noise)
            metrics = dict(score_vertical_gbdt(transport, session.relay, label_holder, partners, f"{run_id}/gbdt-eval",
                                               aligned=splits.test).meta)
            metrics["trees"] = gb.trees
            comparison["vertical GBDT"] = metrics
            for p, party in parties.items():
                arrays, meta = party.gbdt.part_arrays()
                store.register_model(f"{name}-gbdt:{p}", run_id, arrays, meta)
            extra_reveals["gbdt"] = GBDT_REVEALS + (" Partner histograms noised (sigma = %g in gradient units): " % gbdt_hist_noise
                                                    + "; ".join(f"{p} epsilon = {v['epsilon']:.2f} over {int(v['releases'])} "
                                                                f"releases (delta {v['delta']:g})" for p, v in gb.privacy.items())
                                                    + ". These epsilons cover the noised sums only and are conditional on "
                                                    "the exact split partitions the bank also sees: across trees those let "
                                                    "it recover most training rows' partner bins (a review measured 59-92% "
                                                    "with 40 trees, depth 3, 8 bins)."
                                                    if gb.privacy else " Partner histograms are not noised in this run.")
            dp_accounts["vertical GBDT (partner histograms)"] = dict(gb.privacy)
            fields_seen["vertical GBDT"] = views_receipt(GBDT_VIEWS)
        for m in comparison.values():
            if "auc" in m:
                m["gini"] = gini(float(m["auc"]))
        store.record_info(run_id, "parties", {p: {"n_train": len(splits.train), "n_test": len(splits.test),
                                                  "positive_rate": None} for p in datasets})
        store.record_info(run_id, "final_metrics", {k: joint[k] for k in ("auc", "ks", "brier") if k in joint})
        store.record_info(run_id, "comparisons", {"baselines": {f"{label_holder} alone (same rows)": {
            k: bank_only[k] for k in ("auc", "ks", "brier")}}, "notes": [
            f"{session.n_aligned} customers are known to every party and were used for training and evaluation "
            f"({len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} test).",
            f"The bank-only model is an ordinary logistic regression on {label_holder}'s own columns and the same "
            "rows: the gain is what the partners' data adds."]})
        store.record_info(run_id, "vertical", {"alignment": alignment, "training": training, "joint": joint,
                                               "bank_only": bank_only, "scored": [s.as_dict() for s in scored],
                                               "comparison": comparison, "scorecard": scorecard_rows, "iv": iv,
                                               "extra_reveals": extra_reveals, "dp_accounts": dp_accounts,
                                               "fields_seen": fields_seen,
                                               "traffic": transport.traffic.summary()})
        store.set_status(run_id, "completed")
    except BaseException as exc:
        store.set_status(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    out = VerticalRunOutcome(run_id, int(session.n_aligned or 0), alignment, training, joint, bank_only, scored,
                             model_name, comparison, scorecard_rows, iv, seconds=time.perf_counter() - started)
    if report_dir is not None:
        out.report = write_vertical_report(store, run_id, Path(report_dir))
    return out


def _alignment_info(outcome: Any) -> dict[str, Any]:
    return {"n_aligned": int(outcome.n_aligned), "sizes": dict(outcome.sizes),
            "pairwise": dict(outcome.cardinalities), "seconds": float(outcome.seconds),
            "reveals": str(outcome.reveals)}


def _registered(store: Store, run_id: str, kind: str) -> dict[str, Any]:
    """A run's registered parts of one model kind ("lr", "scorecard" or "gbdt"), by party."""
    suffix = {"lr": "", "scorecard": "-scorecard", "gbdt": "-gbdt"}[kind]
    out = {}
    for m in store.models_for_run(run_id):
        if ":" not in m.name:
            continue
        base, party = m.name.rsplit(":", 1)
        this = "scorecard" if base.endswith("-scorecard") else "gbdt" if base.endswith("-gbdt") else "lr"
        if this == kind and base.endswith(suffix):
            out[party] = m
    return out


def load_parts(store: Store, run_id: str, parties: list[str], *, scorecard: bool = False) -> dict[str, LocalLinearPart]:
    """Each party's registered part of a run's vertical model (in a deployment: each from its own store)."""
    found = _registered(store, run_id, "scorecard" if scorecard else "lr")
    missing = [p for p in parties if p not in found]
    if missing:
        raise ValueError(f"run {run_id!r} has no registered model part for {missing} (did it finish?)")
    return {p: LocalLinearPart.from_arrays(found[p].arrays, found[p].meta) for p in parties}


def score_with_gbdt(store: Store, run_id: str, datasets: Mapping[str, PartyData], *, label_holder: str,
                    applicants: list[str]) -> list[dict[str, Any]]:
    """Joint GBDT scoring outside the training run: each party loads its own registered part."""
    found = _registered(store, run_id, "gbdt")
    missing = [p for p in datasets if p not in found]
    if missing:
        raise ValueError(f"run {run_id!r} has no registered GBDT part for {missing} (was 'gbdt' among its models?)")
    transport, parties = build_inprocess_vertical(datasets)
    for p, party in parties.items():
        party.gbdt.load_part(found[p].arrays, found[p].meta)
    partners = [p for p in datasets if p != label_holder]
    session = VerticalSession(transport, label_holder=label_holder, partners=partners)
    session.connect()
    score_vertical_gbdt(transport, session.relay, label_holder, partners, "score", applicants=applicants)
    return parties[label_holder].gbdt.results["score"]


def score_with_parts(datasets: Mapping[str, PartyData], parts: Mapping[str, LocalLinearPart], *, label_holder: str,
                     applicants: list[str]) -> list[ScoreResult]:
    """Joint scoring outside a training run: fresh keys, each party loads its own part."""
    transport, parties = build_inprocess_vertical(datasets)
    for name, party in parties.items():
        party.loaded_part = parts[name]
    session = VerticalSession(transport, label_holder=label_holder,
                              partners=[p for p in datasets if p != label_holder])
    session.connect()
    request = session.score(applicants)
    return parties[label_holder].scoring.results[request]


def _receipt_rows(traffic: list[dict[str, Any]]) -> str:
    rows = []
    for t in traffic:
        if t["direction"] != "sent":
            continue
        rows.append(f"<tr><td>{escape(t['party'])}</td><td>{escape(t['kind'])}</td><td>{t['messages']:,}</td>"
                    f"<td>{t['bytes']:,}</td></tr>")
    return ("<table><thead><tr><th>party</th><th>message</th><th>count</th><th>bytes</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def write_vertical_report(store: Store, run_id: str, report_dir: Path) -> Path:
    """The run report with vertical sections: alignment, what was revealed, traffic, scored applications."""
    info = (store.get_run(run_id).info or {}).get("vertical") or {}
    alignment, training = info.get("alignment", {}), info.get("training", {})
    sections = [
        ReportSection("Entity alignment (PSI)", (
            f"<p>{alignment.get('n_aligned', 0):,} customers are common to all parties. "
            f"{escape(str(alignment.get('reveals', '')))}</p>"
            + (f"<p>Pairwise intersections with the label holder: "
               f"{escape(', '.join(f'{k}: {v:,}' for k, v in (alignment.get('pairwise') or {}).items()))}.</p>"
               if alignment.get("pairwise") else ""))),
        ReportSection("What each party learned", (
            f"<p>{escape(str(training.get('reveals', TRAINING_REVEALS)))}</p><p>{escape(SCORING_REVEALS)}</p>"
            f"<p>Training ran {training.get('epochs_run', 0)} epochs (best: {training.get('best_epoch', 0)}), "
            f"{training.get('waves_per_batch', 0)} message waves per minibatch. Messages each party sent "
            "(every party-to-party payload sealed end to end; the coordinator relays ciphertext):</p>"
            + _receipt_rows(info.get("traffic", [])))),
    ]
    comparison = info.get("comparison") or {}
    if len(comparison) > 2:
        rows = "".join(f"<tr><td>{escape(k)}</td>" + "".join(
            f"<td>{m.get(c, float('nan')):.4f}</td>" for c in ("auc", "gini", "ks", "brier")) + "</tr>"
            for k, m in comparison.items())
        sections.append(ReportSection("Model comparison (same held-out rows)", (
            "<table><thead><tr><th>model</th><th>AUC</th><th>Gini</th><th>KS</th><th>Brier</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            + "".join(f"<p>{escape(t)}</p>" for t in (info.get("extra_reveals") or {}).values()))))
    card = info.get("scorecard") or []
    if card:
        rows = "".join(f"<tr><td>{escape(r['party'])}</td><td>{escape(r['feature'])}</td><td>{escape(r['bin'])}</td>"
                       f"<td>{'' if r['woe'] is None else format(r['woe'], '+.3f')}</td><td>{r['points']:.1f}</td></tr>"
                       for r in card)
        ivs = "; ".join(f"{escape(p)}: " + ", ".join(f"{escape(f)} {v:.3f}" for f, v in sorted(d.items(), key=lambda x: -x[1])[:6])
                        for p, d in (info.get("iv") or {}).items())
        sections.append(ReportSection("Scorecard (600 points at 50:1 odds, 20 points to double)", (
            "<p>Each party holds its own rows of this table (the simulation shows them side by side). Points add up "
            f"to the score; higher is safer.</p><p>Information value (the bank's report, top features): {ivs}</p>"
            "<table><thead><tr><th>party</th><th>feature</th><th>bin</th><th>WOE</th><th>points</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")))
    scored = info.get("scored") or []
    if scored:
        rows = []
        for s in scored:
            reasons = "; ".join(f"{r['feature']} ({r['logit_contribution']:+.2f})" for r in s["reasons"][:3])
            missing = ", ".join(s["missing_at"]) or "–"
            rows.append(f"<tr><td>{escape(s['applicant'])}</td><td>{s['probability_of_default']:.3f}</td>"
                        f"<td>{s['score']:.0f}</td><td>{s['partner_contribution']:+.2f}</td>"
                        f"<td>{escape(missing)}</td><td>{escape(reasons)}</td><td>{s['seconds'] * 1000:.1f}</td></tr>")
        sections.append(ReportSection("Scored applications (seen by the bank only)", (
            "<table><thead><tr><th>applicant</th><th>PD</th><th>score</th><th>partners (sum)</th>"
            "<th>not known to</th><th>top reasons</th><th>ms</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")))
    report = build_run_report(store, run_id, sections=sections)
    report.title = f"{store.get_run(run_id).name} — secure vertical logistic regression"
    write_receipt(vertical_receipt(store, run_id), Path(report_dir) / f"{run_id}.receipt.json")
    return write_report(report, Path(report_dir) / f"{run_id}.html")


def vertical_receipt(store: Store, run_id: str) -> dict[str, Any]:
    """The run's privacy receipt: what each protocol revealed to whom, and every message each party sent."""
    run = store.get_run(run_id)
    info = (run.info or {}).get("vertical") or {}
    sent = [t for t in info.get("traffic", []) if t["direction"] == "sent"]
    return {
        "run_id": run_id, "workflow": "vertical", "status": run.status,
        "threat_model": "Semi-honest parties; the coordinator relays sealed envelopes, deals correlated "
                        "randomness and does not collude with a data party.",
        "reveals": {"alignment": info.get("alignment", {}).get("reveals"),
                    "training": (info.get("training") or {}).get("reveals", TRAINING_REVEALS),
                    "scoring": SCORING_REVEALS, **(info.get("extra_reveals") or {})},
        "alignment": {k: v for k, v in info.get("alignment", {}).items() if k != "reveals"},
        "protection": "every party-to-party payload sealed with ChaCha20-Poly1305 under a per-run X25519 "
                      "key agreement; coordinator-visible fields are sizes, party names and aggregate metrics",
        "differential_privacy": info.get("dp_accounts") or "none in this run",
        "fields_seen": info.get("fields_seen") or {},
        "messages_sent": sent,
    }
