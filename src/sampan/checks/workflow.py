"""`ChecksWorkflow`: the checks before training, as one small job every party approves (issue 14 item 4).

Steps (the coordinator's program; only `sampan.checks` messages and, in a vertical job, the vertical run keys and
PSI in cardinality mode cross a party boundary):
1. ``checks.schema`` to every party: declared schemas (public), compared per party and column.
2. Vertical jobs: run keys (`vertical.hello`/`vertical.peers`, signed), then PSI in mode ``cardinality`` between
   the label holder and each partner (`sampan.vertical.psi`), then ``checks.overlap`` asks the label holder for
   the count.
3. ``checks.label`` to every party that declares the label: [rows, positives].
4. Horizontal jobs: ``checks.histogram`` to every party over the columns every party declares with the same
   public bounds; PSI of each party against the pooled others.
Under [checks.dp] every release of steps 2-4 is charged to the run's ledger and persisted (``ctx.recorder.charge``)
BEFORE its request leaves; each party's DP mod noises it (`sampan.checks.privacy`). The overlap count is charged
to the label holder AND the partner (a statistic of both parties' records). Without DP they are exact and the
receipt lists them as revealed. Outside the DP guarantee in every case: the PSI set sizes and the exact overlap
count the label holder computes itself.

What each role learns (threat model: semi-honest parties, a coordinator that does not collude with a party):
- the coordinator: every party's declared schema; the label holders' [rows, positives] (vertical: positives; the
  rows are the PSI set size), every party's
  histograms and the overlap count (Laplace-noised under DP, exact otherwise); in a vertical job the PSI set
  sizes of the label holder and each partner (exact: PSI reveals them), never an id or which ids match;
- the label holder (vertical): each partner's set size and the exact size of their intersection (not covered by
  DP), never which of its ids are in it (the partner reshuffles the doubly blinded points) AS LONG AS it follows
  the protocol: a label holder that blinds each id with its own key learns which ids match (review R14-CHECKS-6,
  a documented limitation of PSI cardinality mode); a partner: the label holder's set size;
- every party: the job's public settings and nothing about another party's rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from sampan.checks.findings import (
    Finding,
    drift_findings,
    label_findings,
    numeric_columns,
    overlap_findings,
    schema_findings,
)
from sampan.checks.protocol import HISTOGRAM, LABEL, OVERLAP, SCHEMA
from sampan.checks.receipt import receipt_terms
from sampan.checks.terms import checks_budget
from sampan.config.checks import ChecksSection
from sampan.core.workflow import RunContext, Workflow, WorkflowResult
from sampan.privacy.ledger import Budget, Ledger, PrivacyEvent
from sampan.vertical.psi import run_psi
from sampan.vertical.session import VerticalSession
from sampan.wire import Message

__all__ = ["ChecksWorkflow", "checks_budget", "settings_of"]


def settings_of(config: Any) -> ChecksSection:
    """The job's [checks] section (defaults when the config has none)."""
    section = getattr(config, "checks", None)
    return section if isinstance(section, ChecksSection) else ChecksSection()


class ChecksWorkflow(Workflow):
    """One pass, no rounds: schema, (vertical) overlap, label balance, (horizontal) drift; findings in the info."""

    name = "checks"

    def run(self, ctx: RunContext) -> WorkflowResult:
        started = time.perf_counter()
        settings = settings_of(ctx.config)
        vertical = getattr(ctx.config, "vertical", None)
        parties = sorted(ctx.transport.parties)
        holder = str(vertical.label_holder) if vertical is not None else None
        plan = _Charges(ctx, parties, settings)
        findings: list[Finding] = []
        ctx.progress("stage", {"stage": "checks: schemas"})
        schemas = {r.sender: dict(r.meta["schema"]) for r in self._ask(ctx, parties, SCHEMA, {}, 1)}
        findings += schema_findings(schemas, vertical=holder is not None, label_holder=holder,
                                    severity=settings.schema_mismatch)
        out: dict[str, Any] = {"schemas": schemas, "dp": plan.terms()}
        if holder is not None:
            ctx.check_cancelled()
            out["overlap"], found = self._overlap(ctx, holder, [p for p in parties if p != holder], settings, plan)
            findings += found
        ctx.check_cancelled()
        ctx.progress("stage", {"stage": "checks: label balance"})
        labelled = sorted(p for p, s in schemas.items() if s.get("label"))
        if holder is not None:
            labelled = [holder] if holder in labelled else []
        counts: dict[str, tuple[float, float]] = {}
        if labelled:
            what = "label counts [positives]" if holder is not None else "label counts [rows, positives]"
            meta = plan.charge(labelled, "label", what, 3)
            # vertical: the label holder's rows are its PSI set size (exact anyway), so only positives are released
            sizes = out["overlap"]["set_sizes"] if holder is not None else {}
            counts = {r.sender: (float(r.meta["n"]) if "n" in r.meta else float(sizes[r.sender]),
                                 float(r.meta["positives"])) for r in self._ask(ctx, labelled, LABEL, meta, 3)}
        rates, found = label_findings(counts, low=settings.min_positive_rate, high=settings.max_positive_rate)
        findings += found
        out["label"] = {p: {"rows": counts[p][0], "positives": counts[p][1], "positive_rate": rates[p]}
                        for p in counts}
        if holder is None:
            ctx.check_cancelled()
            ctx.progress("stage", {"stage": "checks: drift between parties"})
            out["drift"], found = self._drift(ctx, parties, schemas, settings, plan)
            findings += found
        out["findings"] = [f.as_dict() for f in findings]
        out["passed"] = not any(f.severity == "error" for f in findings)
        out["thresholds"] = {"psi_watch": settings.psi_watch, "psi_alert": settings.psi_alert,
                             "min_positive_rate": settings.min_positive_rate,
                             "max_positive_rate": settings.max_positive_rate, "min_overlap": settings.min_overlap}
        warnings = sum(f.severity == "warning" for f in findings)
        errors = sum(f.severity == "error" for f in findings)
        ctx.recorder.checkpoint(1, {}, {"stage": "checks"}, {"warnings": warnings, "errors": errors},
                                time.perf_counter() - started)
        info: dict[str, Any] = {"checks": out, "receipt": receipt_terms(settings, vertical=holder is not None)}
        if plan.ledger is not None:
            info["privacy"] = plan.ledger.summary()
        return WorkflowResult(final_metrics={"warnings": warnings, "errors": errors, "passed": out["passed"]},
                              info=info, outcome=out)

    @staticmethod
    def _ask(ctx: RunContext, parties: Iterable[str], kind: str, meta: Mapping[str, Any], step: int,
             arrays: Mapping[str, np.ndarray] | None = None) -> list[Message]:
        return list(ctx.transport.exchange(Message(ctx.run_id, step, ctx.coordinator, p, kind, dict(arrays or {}),
                                                   dict(meta)) for p in parties))

    def _overlap(self, ctx: RunContext, holder: str, partners: list[str], settings: ChecksSection,
                 plan: _Charges) -> tuple[dict[str, Any], list[Finding]]:
        """Signed run keys, PSI in cardinality mode per partner, then the label holder's count per partner."""
        ctx.progress("stage", {"stage": "checks: id overlap (PSI, cardinality mode)"})
        session = VerticalSession(ctx.transport, label_holder=holder, partners=partners, run_id=ctx.run_id)
        session.connect()
        sizes: dict[str, int] = {}
        for partner in partners:
            outcome = run_psi(ctx.transport, ctx.run_id, holder, partner, "cardinality", step=2)
            sizes.update(outcome.sizes)
        overlaps: dict[str, float] = {}
        for partner in partners:
            # the count is a statistic of both parties' records: both are charged (review R14-CHECKS-3)
            meta = plan.charge([holder, partner], "overlap", f"id overlap count of {holder} and {partner}", 2)
            reply = self._ask(ctx, [holder], OVERLAP, {**meta, "peer": partner}, 2)[0]
            overlaps[partner] = float(reply.meta["count"])
        fractions, found = overlap_findings(overlaps, holder, sizes.get(holder, 0), minimum=settings.min_overlap)
        return {"label_holder": holder, "set_sizes": sizes,
                "partners": {p: {"count": overlaps[p], "fraction_of_label_holder": fractions[p]} for p in partners}
                }, found

    def _drift(self, ctx: RunContext, parties: list[str], schemas: Mapping[str, Mapping[str, Any]],
               settings: ChecksSection, plan: _Charges) -> tuple[dict[str, Any], list[Finding]]:
        columns, skipped = numeric_columns(schemas, settings.columns, settings.bounds)
        if not columns or len(parties) < 2:
            why = "fewer than two parties" if len(parties) < 2 else "no column can be compared"
            return {"columns": [], "psi": {}, "bins": settings.bins}, [
                *skipped, Finding("drift", "info", None, None, f"drift not compared: {why}")]
        meta = plan.charge(parties, "histogram", f"histograms of {len(columns)} columns", 4)
        replies = self._ask(ctx, parties, HISTOGRAM, {**meta, "columns": columns, "bins": settings.bins}, 4)
        histograms = {r.sender: np.asarray(r.arrays["counts"], float) for r in replies}
        values, found = drift_findings(histograms, columns, watch=settings.psi_watch, alert=settings.psi_alert)
        return {"columns": columns, "bins": settings.bins, "psi": values,
                "histograms": {p: h.tolist() for p, h in histograms.items()}}, [*skipped, *found]


class _Charges:
    """The run's ledger under [checks.dp]: each release charged and persisted before its request leaves."""

    def __init__(self, ctx: RunContext, parties: list[str], settings: ChecksSection) -> None:
        self.ctx, self.dp = ctx, settings.dp
        self.ledger: Ledger | None = None
        if self.dp is not None:
            prior = ctx.recorder.ledger()
            budget = checks_budget(settings, len(parties), vertical=getattr(ctx.config, "vertical", None) is not None)
            self.ledger = Ledger.from_json(prior) if prior else Ledger(
                {p: Budget(float(budget), float(self.dp.delta)) for p in parties})

    def epsilon(self, release: str) -> float:
        assert self.dp is not None
        return float(getattr(self.dp, f"{release}_epsilon"))

    def charge(self, parties: list[str], release: str, note: str, step: int) -> dict[str, Any]:
        """The request meta for this release: {} without DP; under DP the charge is recorded and persisted first."""
        if self.ledger is None:
            return {}
        epsilon = self.epsilon(release)
        events = [PrivacyEvent(party=p, level="DP1", mechanism="laplace", epsilon=epsilon, step=step,
                               note=f"checks: {note}") for p in parties]
        self.ledger.check(events)
        for event in events:
            self.ledger.record(event)
        self.ctx.recorder.charge(self.ledger.to_json(), {"step": step, "release": release, "charges": [
            {"party": p, "level": "DP1", "mechanism": "laplace", "epsilon": epsilon} for p in parties]})
        return {"dp": {"epsilon": epsilon}}

    def terms(self) -> dict[str, Any] | None:
        if self.dp is None:
            return None
        return {"mechanism": "laplace", "label_epsilon": self.dp.label_epsilon,
                "histogram_epsilon": self.dp.histogram_epsilon, "overlap_epsilon": self.dp.overlap_epsilon}
