"""The vertical workflow: align, train, compare and keep the model parts at the parties, over messages only.

`VerticalWorkflow` is the coordinator's program for a vertical run (run.workflow = "vertical"). It
reaches the parties only through ``ctx.transport``: run keys (hello/peers), PSI alignment, the pinned
splits, secure LR, the bank's own-columns baseline, the joint evaluation, and per the job's models a
scorecard (federated WOE + secure LR on WOE columns) and a vertical GBDT. Everything it reports comes
from reply messages; each party registers its own model parts in its own registry when asked
(``vertical.save_model``), so the result carries no model.

Stages and resuming. Each stage (aligned, lr, scorecard, gbdt) ends with ``ctx.recorder.checkpoint``
(the next round number) holding the stages done, the public splits and the reported metrics. On resume
the workflow asks every party which stages of this run it still holds (``vertical.state``): a deployed
agent keeps a run's channels, alignment and parts across a *coordinator* restart, so completed stages
are skipped. A party that restarted holds nothing (its keys, shares and parts were in memory). When every
party restarted, the run restarts from alignment under the same run id, every stage redone. When only some
did, the others still hold this run's keys and refuse a second ``vertical.hello`` (run keys are made once
per run, so a coordinator cannot reset what the protocols remember per channel): the resume then fails
with an error saying so, and the run must be started again under a new run id (review R12-VER-4; keys per
(run, attempt) would lift this). Its row book (persisted by a
deployed party) still counts the evaluations the first attempt made: a redone evaluation of the same
model (the bank's baseline with the same seed and rows) is refused, and every other one counts against
the evaluation cap; start a new run then. A stage interrupted half-way is redone from its start.

What each role learns (in the receipt as "reveals"; protocol by protocol in their own modules):

* the coordinator: party names, roles and feature counts, the aligned count and pairwise sizes (PSI),
  the batch schedule, aggregate metrics of every model on the test rows (from the bank), the IV of every
  feature and the scorecard points per bin each party releases (``vertical.summary``: the bank its IV
  report and its own rows, a partner only its own rows), how many applications the bank scored (never a
  score), and the names/versions of the parts each party registered.
* the bank: what each protocol's docstring states (masked sums, noised counts, its own scores).
* a partner: what each protocol's docstring states, and nothing from the summary step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.core.workflow import RunContext, Workflow, WorkflowResult
from sampan.models.scorecard import gini
from sampan.vertical.gbdt import REVEALS as GBDT_REVEALS
from sampan.vertical.gbdt import VIEWS as GBDT_VIEWS
from sampan.vertical.gbdt import score_vertical_gbdt, train_vertical_gbdt
from sampan.vertical.histograms import views_receipt
from sampan.vertical.job import VerticalJob, job_of
from sampan.vertical.noise_plan import RunNoiseLedger, gbdt_events, woe_events
from sampan.vertical.party_parts import STAGES
from sampan.vertical.party_parts import VIEWS as SUMMARY_VIEWS
from sampan.vertical.scoring import REVEALS as SCORING_REVEALS
from sampan.vertical.secure_lr import reveals as secure_lr_reveals
from sampan.vertical.secure_lr_range import check_metrics
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.woe import REVEALS as WOE_REVEALS
from sampan.vertical.woe import VIEWS as WOE_VIEWS
from sampan.vertical.woe import federated_woe

__all__ = ["VerticalWorkflow"]

SUMMARY_REVEALS = ("Run summary: the coordinator learns, from the bank, the information value of every feature "
                   "and the bank's own scorecard rows; from each partner only its own scorecard rows (points per WOE "
                   "bin of its own features). Scores of applications stay with the bank (only their count leaves).")


EVALUATION_REVEALS = ("Held-out evaluation: for each model, once, on the fixed test rows the bank computed itself "
                      "(its test_ids file or its keyed split; at least 50, never training or validation rows; "
                      "outside the DP unit), the bank releases AUC, KS, Brier, the default rate, the mean PD and, per "
                      "fixed PD band (public edges; adjacent bands merged until each released band holds at least "
                      "10 rows), the number of defaults, of non-defaults and the summed PD, from which the report "
                      "draws each model's ROC and calibration curves.")


class VerticalWorkflow(Workflow):
    name = "vertical"

    def total_rounds(self, config: Any) -> int:
        return len(STAGES)

    def run(self, ctx: RunContext) -> WorkflowResult:
        job = job_of(ctx.config)
        started = time.perf_counter()
        session = VerticalSession(ctx.transport, label_holder=job.label_holder, partners=list(job.partners),
                                  run_id=ctx.run_id, progress=lambda stage, info: ctx.progress(stage, info))
        state, splits = self._resume(ctx, session)
        ledger = RunNoiseLedger(job.parties, job.budget, ctx.recorder.charge, ctx.recorder.ledger())
        if "aligned" not in state["done"]:
            ctx.progress("stage", {"stage": "connecting (signed run keys)"})
            session.connect()
            ctx.progress("stage", {"stage": "aligning customers by PSI"})
            outcome = session.align(backend=job.psi_backend)
            state["alignment"] = {"n_aligned": int(outcome.n_aligned), "sizes": dict(outcome.sizes),
                                  "pairwise": dict(outcome.cardinalities), "seconds": float(outcome.seconds),
                                  "reveals": str(outcome.reveals)}
            ctx.recorder.event("aligned", {k: v for k, v in state["alignment"].items() if k != "reveals"})
            # the dataset's pinned partition where the parties have one; else [vertical] test/val fractions
            splits = session.splits(test_fraction=job.test_fraction, val_fraction=job.val_fraction, seed=ctx.seed)
            self._done(ctx, session, state, "aligned", splits, started)
        assert splits is not None
        session.n_aligned = int(state["alignment"]["n_aligned"])
        for stage, step in (("lr", self._lr), ("scorecard", self._scorecard), ("gbdt", self._gbdt)):
            if stage in state["done"] or (stage != "lr" and stage not in job.models):
                continue
            ctx.check_cancelled()
            step(ctx, job, session, splits, state, ledger)
            self._done(ctx, session, state, stage, splits, started)
        ctx.check_cancelled()
        return self._finish(ctx, job, session, splits, state, ledger)

    # --- stages ---------------------------------------------------------------------------------------
    def _lr(self, ctx: RunContext, job: VerticalJob, session: VerticalSession, splits: Splits,
            state: dict[str, Any], ledger: RunNoiseLedger) -> None:
        ctx.progress("stage", {"stage": "training secure vertical LR", "epochs": job.lr.epochs})
        result = session.train(splits, job.lr, seed=ctx.seed)
        state["training"] = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                             "stopped_early": result.stopped_early, "features": result.features,
                             "mean_epoch_seconds": float(np.mean(result.epoch_seconds)),
                             "waves_per_batch": result.waves_per_batch, "shared_weights": bool(job.lr.shared_weights),
                             "history": result.history,
                             "reveals": secure_lr_reveals(job.lr.shared_weights)}
        ctx.progress("stage", {"stage": "evaluating"})
        state["joint"] = session.evaluate(splits.test)
        state["bank_only"] = session.bank_only(splits, job.lr, seed=ctx.seed)
        state["comparison"] = {f"{job.label_holder} alone (LR, own columns)": state["bank_only"],
                               "vertical LR (secure)": state["joint"]}
        for model, metrics in state["comparison"].items():  # never report a metric outside its possible range
            check_metrics(model, metrics)
        if job.applicants:
            ctx.progress("stage", {"stage": f"scoring {len(job.applicants)} new applications"})
            requests = [session.score([a]) for a in job.applicants]
            state["scored"] = self._save_scores(ctx, session, requests, f"{job.name}")

    def _scorecard(self, ctx: RunContext, job: VerticalJob, session: VerticalSession, splits: Splits,
                   state: dict[str, Any], ledger: RunNoiseLedger) -> None:
        ctx.progress("stage", {"stage": "federated WOE binning and scorecard"})
        epsilon = job.woe_dp_epsilon

        def charge(slots: dict[str, dict[str, Any]]) -> None:
            if epsilon:
                ledger.charge(woe_events(slots, job.label_holder, float(epsilon), job.woe_dp_delta),
                              {"stage": "scorecard", "release": "federated WOE counts"})

        woe = federated_woe(ctx.transport, ctx.run_id, job.label_holder, list(job.partners), splits.train,
                            dp_epsilon=epsilon, dp_delta=job.woe_dp_delta, before_release=charge,
                            monotone=job.scorecard_monotone)
        self._broadcast(ctx, session, "vertical.use_woe", {"on": True, "monotone": job.scorecard_monotone})
        session.progress = lambda stage, info: None  # the run's epochs are the main LR's
        fitted = session.train(splits, job.lr, seed=ctx.seed)
        state["scorecard_training"] = {"history": fitted.history, "best_epoch": fitted.best_epoch}
        card = session.evaluate(splits.test)  # each model evaluated once, on the fixed test rows
        self._broadcast(ctx, session, "vertical.use_woe", {"on": False})
        check_metrics("vertical scorecard (WOE + secure LR)", card)
        state["comparison"]["vertical scorecard (WOE + secure LR)"] = card
        summaries = session.relay.wave(ctx.transport, (session.relay.request(p, "vertical.summary")
                                                       for p in session.parties))
        by_party = {r.sender: r.meta for r in summaries}
        state["scorecard"] = [row for p in session.parties for row in by_party[p].get("scorecard", [])]
        state["iv"] = dict(by_party[job.label_holder].get("iv") or {})
        state.setdefault("fields_seen", {})["run summary"] = views_receipt(SUMMARY_VIEWS)
        state.setdefault("extra_reveals", {})["scorecard"] = WOE_REVEALS + (" DP on the counts: " + "; ".join(
            f"{p} epsilon = {v['epsilon']:.2f} (delta {v['delta']:g}, sigma {v['sigma']:.2f}): {v['protects']}"
            for p, v in woe["privacy"].items()) + "." if woe.get("privacy") else " No DP on the counts in this run: "
            "the bank sees exact partner counts.")
        state.setdefault("dp_accounts", {})["scorecard (federated WOE counts)"] = dict(woe.get("privacy") or {})
        state.setdefault("fields_seen", {})["federated WOE"] = views_receipt(WOE_VIEWS)

    def _gbdt(self, ctx: RunContext, job: VerticalJob, session: VerticalSession, splits: Splits,
              state: dict[str, Any], ledger: RunNoiseLedger) -> None:
        ctx.progress("stage", {"stage": "training vertical GBDT"})
        sigma = float(job.gbdt_hist_noise)

        def charge(slots: dict[str, dict[str, Any]]) -> None:
            if sigma > 0:
                ledger.charge(gbdt_events(slots, job.label_holder, sigma, job.gbdt),
                              {"stage": "gbdt", "release": "partner histograms (upper bound: every node)"})

        gb = train_vertical_gbdt(ctx.transport, ctx.run_id, job.label_holder, list(job.partners), splits.train,
                                 splits.val, job.gbdt, hist_noise=sigma, before_release=charge)
        metrics = dict(score_vertical_gbdt(ctx.transport, session.relay, job.label_holder, list(job.partners),
                                           f"{ctx.run_id}/gbdt-eval", aligned=splits.test).meta)
        metrics["trees"] = gb.trees
        state["gbdt_training"] = {"history": gb.history, "best_iteration": gb.best_iteration}
        for record in gb.history:  # per-tree log-loss the coordinator opened: finite, or the run stops
            check_metrics(f"vertical GBDT (tree {record.get('tree')})", record)
        check_metrics("vertical GBDT", metrics)
        state["comparison"]["vertical GBDT"] = metrics
        state["gbdt_importance"] = dict(gb.importance)  # the bank's gain importance (declared in GBDT_VIEWS)
        state.setdefault("extra_reveals", {})["gbdt"] = GBDT_REVEALS + (
            f" Partner histograms noised (sigma = {sigma:g} in gradient units): " + "; ".join(
                f"{p} epsilon = {v['epsilon']:.2f} over {int(v['releases'])} releases (delta {v['delta']:g})"
                for p, v in gb.privacy.items())
            + ". These epsilons cover the noised sums only and are conditional on the exact split partitions the "
            "bank also sees: across trees those let it recover most training rows' partner bins (a review measured "
            "59-92% with 40 trees, depth 3, 8 bins)." if gb.privacy
            else " Partner histograms are not noised in this run.")
        state.setdefault("dp_accounts", {})["vertical GBDT (partner histograms)"] = dict(gb.privacy)
        state.setdefault("fields_seen", {})["vertical GBDT"] = views_receipt(GBDT_VIEWS)

    # --- plumbing -------------------------------------------------------------------------------------
    def _resume(self, ctx: RunContext, session: VerticalSession) -> tuple[dict[str, Any], Splits | None]:
        """Completed stages the parties still hold are skipped; otherwise the run restarts from alignment."""
        cp = ctx.recorder.last_checkpoint()
        # checkpoint rounds only grow: a restart from alignment writes after the earlier attempt's
        fresh: dict[str, Any] = {"done": [], "requests": 0, "round": cp.round if cp is not None else 0}
        if cp is None or not cp.meta.get("done"):
            return fresh, None
        state = dict(cp.meta)
        replies = session.relay.wave(ctx.transport, (session.relay.request(p, "vertical.state")
                                                     for p in session.parties))
        held = {r.sender: set(r.meta.get("stages") or ()) for r in replies}
        missing = {p: sorted(set(state["done"]) - h) for p, h in held.items() if set(state["done"]) - h}
        if missing and any(held.values()):  # review R12-VER-4: some parties restarted, others did not
            kept = sorted(p for p, h in held.items() if h)
            ctx.recorder.event("vertical_restart_refused", {"parties_missing_stages": missing, "parties_holding": kept})
            raise RuntimeError(
                f"vertical run {ctx.run_id}: {sorted(missing)} lost this run's state (restarted) while {kept} still "
                "hold it; run keys are made once per run (a second vertical.hello is refused), so this run cannot "
                "restart from alignment: start a new run")
        if missing:
            ctx.recorder.event("vertical_restart_from_alignment", {"parties_missing_stages": missing})
            ctx.progress("stage", {"stage": "parties lost this run's state: restarting from alignment"})
            return fresh, None
        ctx.recorder.event("vertical_resumed", {"skipping": list(state["done"])})
        session.requests_made = int(state.get("requests", 0))
        splits = Splits(*(np.asarray(cp.arrays[k], dtype=np.int64) for k in ("train", "val", "test")))
        return state, splits

    def _done(self, ctx: RunContext, session: VerticalSession, state: dict[str, Any], stage: str, splits: Splits,
              started: float) -> None:
        """Every party notes it holds the stage, then one durable checkpoint of the public state."""
        self._broadcast(ctx, session, "vertical.stage_done", {"stage": stage})
        state["done"] = [*state["done"], stage]
        state["requests"] = session.requests_made
        state["round"] = int(state.get("round", 0)) + 1
        metrics = {k: state[k]["auc"] for k in ("joint",) if k in state and "auc" in state[k]}
        ctx.recorder.checkpoint(state["round"], {"train": splits.train, "val": splits.val, "test": splits.test},
                                _jsonable(state), {"global": metrics}, time.perf_counter() - started)
        ctx.progress("stage_done", {"stage": stage})

    def _broadcast(self, ctx: RunContext, session: VerticalSession, kind: str, meta: Mapping[str, Any]) -> None:
        session.relay.wave(ctx.transport, (session.relay.request(p, kind, meta=dict(meta)) for p in session.parties))

    def _save_scores(self, ctx: RunContext, session: VerticalSession, requests: list[str], name: str
                     ) -> dict[str, Any]:
        """The bank keeps the scores in its own registry; the coordinator learns the request ids and a count."""
        reply = session.relay.wave(ctx.transport, [session.relay.request(
            session.label_holder, "score.save", meta={"requests": requests, "name": name})])[0]
        return {"requests": requests, "n": int(reply.meta["n"]), "kept_by": session.label_holder}

    def _finish(self, ctx: RunContext, job: VerticalJob, session: VerticalSession, splits: Splits,
                state: dict[str, Any], ledger: RunNoiseLedger) -> WorkflowResult:
        kinds = [m for m in job.models if m in ("lr", "scorecard", "gbdt")]
        saved = session.relay.wave(ctx.transport, (session.relay.request(
            p, "vertical.save_model", meta={"name": job.name, "kinds": kinds}) for p in session.parties))
        registered = {r.sender: dict(r.meta["saved"]) for r in saved}
        state.setdefault("fields_seen", {})["run summary"] = views_receipt(SUMMARY_VIEWS)  # every run: its evaluation
        comparison = state["comparison"]
        for m in comparison.values():
            if "auc" in m:
                m["gini"] = gini(float(m["auc"]))
        joint, bank_only = state["joint"], state["bank_only"]
        final = {k: joint[k] for k in ("auc", "ks", "brier") if k in joint}
        info = {
            "parties": {p: {"n_train": len(splits.train), "n_test": len(splits.test), "positive_rate": None}
                        for p in session.parties},
            "final_metrics": final,
            "comparisons": {"baselines": {f"{job.label_holder} alone (same rows)": {
                k: bank_only[k] for k in ("auc", "ks", "brier")}}, "notes": [
                f"{session.n_aligned} customers are known to every party and were used for training and evaluation "
                f"({len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} test).",
                f"The bank-only model is an ordinary logistic regression on {job.label_holder}'s own columns and the "
                "same rows: the gain is what the partners' data adds."]},
            "vertical": {"alignment": state["alignment"], "training": state["training"], "joint": joint,
                         "bank_only": bank_only, "scored": state.get("scored") or {}, "comparison": comparison,
                         "scorecard": state.get("scorecard") or [], "iv": state.get("iv") or {},
                         "gbdt_importance": state.get("gbdt_importance") or {},
                         "curves": {k: dict(state[k]) for k in ("scorecard_training", "gbdt_training") if k in state},
                         "extra_reveals": state.get("extra_reveals") or {},
                         "dp_accounts": state.get("dp_accounts") or {},
                         "fields_seen": state.get("fields_seen") or {}, "model_name": job.name,
                         "registered": registered, "label_holder": job.label_holder,
                         "partners": list(job.partners), "run_ledger": ledger.summary(),
                         "traffic": ctx.transport.traffic.summary()},
        }
        info["receipt"] = self._receipt(state, info["vertical"])
        if ledger.ledger.events:
            info["privacy"] = ledger.summary()
        return WorkflowResult(final_metrics=final, info=_jsonable(info), outcome=_jsonable(info["vertical"]))

    @staticmethod
    def _receipt(state: dict[str, Any], vertical: Mapping[str, Any]) -> dict[str, Any]:
        """The receipt terms (`sampan.runtime.receipt`): what each protocol step revealed to whom."""
        return {
            "threat_model": "Semi-honest parties; the coordinator relays sealed envelopes, deals correlated "
                            "randomness and does not collude with a data party.",
            "reveals": {"alignment": state["alignment"].get("reveals"), "training": state["training"].get("reveals"),
                        "scoring": SCORING_REVEALS, "evaluation": EVALUATION_REVEALS, "summary": SUMMARY_REVEALS,
                        "missing_values": "nothing: each party fills its own missing cells from its own rows "
                                          "(sampan.data.missing.impute_locally; under vertical DP from the "
                                          "midpoint of the column's public bounds); no statistic leaves it",
                        **(state.get("extra_reveals") or {})},
            "protections": {"*": "every party-to-party payload sealed with ChaCha20-Poly1305 under a per-run X25519 "
                                 "key agreement; coordinator-visible fields are sizes, party names and aggregate "
                                 "metrics"},
            "alignment": {k: v for k, v in state["alignment"].items() if k != "reveals"},
            "dp_accounts": dict(vertical.get("dp_accounts") or {}) or "none in this run",
            "fields_seen": dict(vertical.get("fields_seen") or {}),
        }


def _jsonable(value: Any) -> Any:
    """Numpy scalars and tuples out of reported meta, so the store keeps plain JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
