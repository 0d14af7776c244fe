"""The coordinator's consent calls: ask a party to approve a job, read a party's dataset catalogue, submit
an approved job (the control plane's gateway calls these; `sampan submit` goes through them too).

The coordinator only relays: each party recomputes the spec hash, decides (by its rules, or by a person's
decision when it accepts decisions relayed from the console), reserves budget and signs. The approvals the
coordinator collects travel with `deploy.open_run`, where every party verifies every party's approval
(`sampan.deploy.agent_consent`); the coordinator's checks here only fail a bad job early, with the reason.
The coordinator's view of each party's budget (`party_catalogue`) is a mirror for display: the party's own
book is authoritative.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sampan.config import ConfigError
from sampan.core.transport import PartyError, raise_for_error
from sampan.deploy.config import RunSpec, parse_run_spec
from sampan.deploy.consent import Approval, ConsentRefused, JobSpec, config_sha256, job_spec, verify_approval
from sampan.runtime.seeds import fresh_seed
from sampan.runtime.store_schema import new_run_id
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.deploy.config import CoordinatorConfig
    from sampan.runtime.store import Store
    from sampan.transport.grpc_hub import Hub

__all__ = ["ConsentCalls", "CONSENT_EVENT"]

log = logging.getLogger("sampan.deploy.coordinator")
CONSENT_EVENT = "consent"   # the run's audit event holding its spec and every party's approval
CONSENT_TIMEOUT_S = 60.0


class ConsentCalls:
    """Mixin of `Coordinator`: consent requests to the parties and approved submissions."""

    if TYPE_CHECKING:
        config: CoordinatorConfig
        store: Store
        hub: Hub

        def _parties(self, spec: RunSpec) -> list[str]: ...
        def _enqueue(self, run_id: str) -> None: ...

    # --- asking parties ----------------------------------------------------------------------------------
    def _ask(self, party: str, kind: str, run_id: str, meta: Mapping[str, Any]) -> Message:
        if party not in self.hub.party_names:
            raise ConsentRefused(party, f"{party!r} is not a party member of this federation")
        missing = self.hub.wait_for([party], min(CONSENT_TIMEOUT_S, self.config.coordinator.connect_timeout_s))
        if missing:
            raise ConsentRefused(party, "its agent is not connected, so it cannot be asked")
        message = Message(run_id, 0, self.config.coordinator.name, party, kind, meta=dict(meta))
        try:  # one request straight through the hub (not a run's transport: consent is asked before any run)
            return raise_for_error(self.hub.wait(self.hub.send(message)))
        except PartyError as exc:
            raise ConsentRefused(party, exc.error) from None

    def request_approval(self, party: str, spec: JobSpec, decided_by: str) -> Approval:
        """Ask `party` to approve `spec`. `decided_by`: "person:<user>" (a decision made in the console,
        relayed), "rule:<id>" or "operator:<name>" (approve by the party's standing rules). Returns the
        party's signed approval; raises ConsentRefused(party, reason) with the party's own reason."""
        reply = self._ask(party, "consent.request", spec.job_id,
                          {"spec": spec.model_dump(mode="json"), "decided_by": decided_by})
        try:
            approval = Approval.model_validate(reply.meta.get("approval"))
        except Exception as exc:  # noqa: BLE001 - a malformed reply is the party's failure to consent
            raise ConsentRefused(party, f"its reply holds no valid approval ({exc})") from None
        verify_approval(approval, spec, self._approval_verifier())
        self.store.log_event("consent", "approval_received", {"party": party, "job_id": spec.job_id,
                                                              "spec_hash": approval.spec_hash,
                                                              "decided_by": approval.decided_by,
                                                              "reserved": approval.reserved.model_dump()})
        log.info("party %s approved job %s (%s)", party, spec.job_id, approval.decided_by)
        return approval

    def release_approval(self, party: str, job_id: str, decided_by: str = "") -> dict[str, Any]:
        """Ask `party` to withdraw its approval of job `job_id`, which has not started: the agent voids its stored
        approval and returns the whole reservation to its budget (`consent.release`; audited there). Returns
        {"job_id", "voided", "released": {epsilon, delta}}; raises ConsentRefused(party, reason) when the agent
        refuses (the job opened there: cancel the run instead) or cannot be reached."""
        reply = self._ask(party, "consent.release", job_id, {"job_id": job_id, "decided_by": decided_by})
        self.store.log_event("consent", "approval_released", {"party": party, "job_id": job_id,
                                                              "decided_by": decided_by,
                                                              "released": reply.meta.get("released")})
        log.info("party %s released its approval of job %s (%s)", party, job_id, decided_by)
        return dict(reply.meta)

    def party_catalogue(self, party: str) -> list[dict[str, Any]]:
        """`party`'s datasets as its agent describes them: name, columns with types, label and id columns, row
        count, budget status and history (schemas and counts only, never rows)."""
        reply = self._ask(party, "consent.catalogue", "consent", {})
        return [dict(d) for d in reply.meta.get("datasets") or []]

    def _approval_verifier(self) -> Any:
        from sampan.deploy.identity_source import load_verifier

        return load_verifier(self.config.tls)  # with tls.issued: an HSM member's approvals come from its HSM key

    # --- building and submitting a job -------------------------------------------------------------------
    def normalized_config(self, config: Mapping[str, Any], by: str) -> dict[str, Any]:
        """A submitted run config as the coordinator stores it (its own report folder, the submitter named)."""
        data = dict(config)
        run_section = dict(data.get("run") or {})
        run_section.pop("store", None)
        run_section["report_dir"] = str(self.config.coordinator.report_dir)
        data["run"] = run_section
        data["deploy"] = {**dict(data.get("deploy") or {}), "submitted_by": by}
        return parse_run_spec(data, source=f"run submitted by {by}").stored

    def build_spec(self, config: Mapping[str, Any], by: str, *, job_id: str | None = None,
                   datasets: Mapping[str, Any] | None = None) -> tuple[JobSpec, dict[str, Any]]:
        """The job spec of a submitted config and the normalized config it hashes (pass both to
        `submit_approved`). Each party's dataset and columns come from its own catalogue unless given."""
        stored = self.normalized_config(config, by)
        return self._spec_of(stored, job_id or new_run_id(), datasets), stored

    def _spec_of(self, stored: Mapping[str, Any], job_id: str, datasets: Mapping[str, Any] | None) -> JobSpec:
        from sampan.deploy.coordinator import _with_parties

        spec = parse_run_spec(dict(stored), source=f"job {job_id}")
        parties = self._parties(spec)
        chosen = dict(datasets or {})
        for party in parties:
            if party not in chosen:
                chosen[party] = self._party_columns(party, spec.deploy.dataset)
        return job_spec(stored, parties=parties, datasets=chosen, label_holder=spec.deploy.label_holder,
                        operator=spec.deploy.submitted_by, job_id=job_id,
                        parsed=_with_parties(spec, parties, job_id))

    def _party_columns(self, party: str, dataset: str | None) -> dict[str, Any]:
        listed = self.party_catalogue(party)
        if dataset is None:
            if len(listed) != 1:
                raise ConsentRefused(party, f"it has datasets {[d.get('name') for d in listed]}; the run must name "
                                     "one (deploy.dataset)")
            entry = listed[0]
        else:
            found = [d for d in listed if d.get("name") == dataset]
            if not found:
                raise ConsentRefused(party, f"it has no dataset {dataset!r} (has {[d.get('name') for d in listed]})")
            entry = found[0]
        return {"dataset": str(entry["name"]), "columns": [str(c["name"]) for c in entry.get("columns") or []]}

    def submit_approved(self, spec: JobSpec, config: Mapping[str, Any], approvals: Sequence[Approval | dict[str, Any]],
                        by: str) -> str:
        """Queue a job every party approved; returns its run id (= `spec.job_id`). `config` is the normalized
        config `build_spec` returned: its hash must be the spec's. Every party's approval is checked here
        (early, with the reason) and again by every party when the run opens."""
        stored = dict(config)
        if config_sha256(stored) != spec.config_sha256:
            raise ConfigError(f"job {spec.job_id}: the config is not the one the approved spec hashes (its "
                              "config_sha256 differs): a changed job needs new approvals")
        verifier = self._approval_verifier()
        given = [a if isinstance(a, Approval) else Approval.model_validate(a) for a in approvals]
        by_party = {a.party: verify_approval(a, spec, verifier) for a in given}
        missing = [p for p in spec.parties if p not in by_party]
        if missing:
            raise ConsentRefused(missing[0], f"no approval from {missing}: every party the job reads from must "
                                 "approve it")
        run = parse_run_spec(stored, source=f"job {spec.job_id}")
        seed = run.config.run.seed if run.config.run.seed is not None else fresh_seed()
        from sampan.runtime.capabilities import get_capability

        total = get_capability(run.workflow).workflow(run.config).total_rounds(run.config)
        run_id = self.store.create_run(name=run.config.run.name, workflow=run.workflow, seed=seed, config=stored,
                                       total_rounds=total, run_id=spec.job_id)
        self.record_consent(run_id, spec, [by_party[p] for p in spec.parties])
        self.store.log_event(run_id, "submitted", {"by": by, "parties": list(spec.parties), "approved": True})
        log.info("run %s (%s) submitted by %s with every party's approval", run_id, run.workflow, by)
        self._enqueue(run_id)
        return run_id

    # --- the run's consent ---------------------------------------------------------------------------------
    def record_consent(self, run_id: str, spec: JobSpec, approvals: Sequence[Approval]) -> None:
        self.store.log_event(run_id, CONSENT_EVENT, {"spec": spec.model_dump(mode="json"),
                                                     "spec_hash": spec.spec_hash(),
                                                     "approvals": [a.model_dump(mode="json") for a in approvals]})

    def run_consent(self, run_id: str, stored: Mapping[str, Any]) -> tuple[JobSpec, list[Approval]]:
        """The run's spec and approvals: recorded at submission (`submit_approved`) or, for a run an operator
        submitted (`sampan submit`), asked now of every party by its standing rules (decided_by
        "operator:<submitter>"); a refusal fails the run before any data message."""
        for event in reversed(self.store.events(run_id)):
            if event.kind == CONSENT_EVENT:
                detail = dict(event.detail)
                return (JobSpec.model_validate(detail["spec"]),
                        [Approval.model_validate(a) for a in detail["approvals"]])
        spec = self._spec_of(stored, run_id, None)
        operator = spec.operator or "unknown"
        approvals: list[Approval] = []
        try:
            for party in spec.parties:
                approvals.append(self.request_approval(party, spec, f"operator:{operator}"))
        except ConsentRefused:
            self._release(run_id, [a.party for a in approvals])
            raise
        self.record_consent(run_id, spec, approvals)
        return spec, approvals

    def _release(self, run_id: str, parties: Sequence[str]) -> None:
        """A job refused by one party never opens: the parties that approved it settle it (nothing spent), so
        their reservations return to their budgets. Best effort: a party not reached keeps its reservation."""
        for party in parties:
            try:
                raise_for_error(self.hub.wait(self.hub.send(Message(run_id, 0, self.config.coordinator.name, party,
                                                                    "deploy.close_run"))))
            except Exception as exc:  # noqa: BLE001 - the refusal is what the run reports
                log.warning("run %s: could not release %s's reservation: %s", run_id, party, exc)
