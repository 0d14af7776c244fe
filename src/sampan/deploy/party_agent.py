"""A party agent: one organisation's process. It loads its own data, dials out, answers the coordinator.

The agent holds the party's tables (bound in its own party.toml) and, per run, that run's handlers:
`deploy.open_run` names the workflow and which of its datasets; the agent checks the job against its
`[allow]` list and its consent (`sampan.deploy.agent_consent`: its own signed approval of exactly this
job spec and every partner's; `consent.request` and `consent.catalogue` are answered there), logs who
submitted it, what it trains, on which columns, with whom, under which protections and what leaves
the bank (`sampan.deploy.job_log`), then builds a `sampan.core.PartySetup`
(its data, the job, its certificate identity, a verifier narrowed to the accepted partners, its privacy
policy, state folder and own model store) and asks the workflow's capability for the party app
(`get_capability(workflow).party_app(setup)`): the very handlers the simulation runs.

The only per-workflow work here is data preparation that is the agent's own: horizontal training and
evaluation get the party's keyed holdout split (`sampan.deploy.holdout`: one keyed-hash Bernoulli draw
per row under a secret it drew itself, pinned per dataset), so no coordinator can rotate rows through
the exactly evaluated holdout or read the training count off its size; its two parts are read-only views of
the cached table, reordered in place once (review R15-HLR-4: the table is held once). Its privacy policy (`[allow]`
floor and required DP, the DP levels the job announced, `[privacy]` budget, central-DP3 trust and
evaluation cap) keeps one ledger persisted in <state_dir>/privacy-ledger.json for every workflow.
Nothing but `sampan.wire` messages ever leaves.

PSI runs single-threaded in an agent: its fork-based workers are unsafe next to gRPC's threads.

A restarted agent rejoins: it reconnects, the coordinator re-sends the open runs' setup and any
outstanding request, and horizontal training carries on (its handlers keep no state that matters).
Vertical protocols keep keys and shares in this process's memory for the run: they survive a restarted
coordinator (the run resumes from its last stage) but not a restarted party (the run starts over).

A refused job goes back to the coordinator as an error naming the rule, into the agent's log, and into
the party's own signed audit log (its store, under the run's id), as does every job it accepts.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.compute import Engine, LocalEngine, make_engine, use_engine
from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.data import PartyData, load_table
from sampan.data.sources import Stamp
from sampan.data.sources import stamp as source_stamp
from sampan.data.sql_source import SqlSource
from sampan.data.stream import load_source
from sampan.deploy.agent_consent import ConsentDesk
from sampan.deploy.agent_keys import forget_secagg, load_run_identity, run_verifier, secagg_client
from sampan.deploy.agent_link import open_link
from sampan.deploy.agent_rows import vertical_row_book
from sampan.deploy.allow import JobRefused, PeerAllowList, check_job, check_request
from sampan.deploy.config import PartyConfig
from sampan.deploy.holdout import holdout_split, keyed_holdout, pinned_split, withdrawn
from sampan.deploy.job_log import job_line, job_record
from sampan.deploy.run_budget import JobReservation, horizontal_policy, vertical_policy
from sampan.deploy.run_rounds import RoundGate
from sampan.files import private_sqlite
from sampan.runtime.capabilities import get_capability
from sampan.transport.grpc_client import PartyLink
from sampan.wire import Message

__all__ = ["PartyAgent", "FAULT_PARTY_ENV", "PAUSE_PARTY_ENV", "keyed_holdout", "pinned_split"]

log = logging.getLogger("sampan.deploy.party")
FAULT_PARTY_ENV = "SAMPAN_FAULT_PARTY_EXIT_ON"  # test hook: "fit:3" = exit hard on receiving the 3rd fit request
PAUSE_PARTY_ENV = "SAMPAN_FAULT_PARTY_PAUSE_ON"  # test hook: "woe.setup:1" = freeze (SIGSTOP) on the 1st woe.setup
MAX_OPEN_RUNS = 8
# Data preparation that is the agent's own, per workflow: these get (train, holdout) by its keyed split.
HOLDOUT_WORKFLOWS = frozenset({"horizontal", "evaluation"})
# these always sign run keys with the organisation's certificate (and so need tls.crl)
KEYED_WORKFLOWS = frozenset({"vertical", "scoring"})
# a capability's state folder under the agent's state_dir (the horizontal one predates the others)
STATE_FOLDERS = {"horizontal": "horizontal", "evaluation": "horizontal"}


@dataclass
class _RunContext:
    workflow: str
    dataset: str
    app: PartyApp
    job: dict[str, Any] | None = None  # the job description this party accepted (every request is checked against it)
    rounds: RoundGate | None = None  # horizontal: at most the approved rounds of `fit` (R14-CONSENT-4)


class PartyAgent:
    def __init__(self, config: PartyConfig) -> None:
        self.config = config
        self.name = config.party.name
        self._tables: dict[str, PartyData] = {}
        self._stamps: dict[str, Stamp | None] = {}  # each table's files (name, mtime, size) when it was read
        self._runs: OrderedDict[str, _RunContext] = OrderedDict()
        self._open_lock = threading.Lock()
        self._seen: dict[str, int] = {}
        fault, pause = os.environ.get(FAULT_PARTY_ENV, ""), os.environ.get(PAUSE_PARTY_ENV, "")
        self._fault = (fault.split(":")[0], int(fault.split(":")[1])) if ":" in fault else None
        self._pause = (pause.split(":")[0], int(pause.split(":")[1])) if ":" in pause else None
        self.link: PartyLink | None = None
        self._identity: Any = None  # PartyIdentity, loaded at the first vertical run
        self._store: Any = None     # this party's own Store (audit log, model parts), opened at first use
        self._ledgers: dict[str, Any] = {}  # its privacy ledger, shared by the policies of its horizontal runs
        self.consent = ConsentDesk(config, self._audit, current=lambda: self.config)  # approvals, rules, budgets
        self.engine: Engine = LocalEngine()  # [compute]: made when serve() starts, closed when it returns

    # --- data ---------------------------------------------------------------------------------------
    def dataset_name(self, dataset: str | None) -> str:
        """The bound dataset a run names (its only one when it names none), without reading it."""
        datasets = self.config.data
        if dataset is None:
            if len(datasets) != 1:
                raise ValueError(f"party {self.name!r} has datasets {sorted(datasets)}; the run must name one "
                                 "(deploy.dataset)")
            dataset = next(iter(datasets))
        if dataset not in datasets:
            raise ValueError(f"party {self.name!r} has no dataset {dataset!r} (has {sorted(datasets)})")
        return dataset

    def table(self, dataset: str | None) -> tuple[str, PartyData]:
        dataset = self.dataset_name(dataset)
        binding = self.config.data[dataset]
        stamp = None if binding.path is None else _stamp(binding.path)  # a SQL dataset: read at first use
        cached = self._tables.get(dataset)  # re-read: a new file, or a table a failed reorder withdrew
        if cached is None or self._stamps.get(dataset) != stamp or withdrawn(cached):  # the table as the file is now
            if binding.sql is not None:
                source = SqlSource(binding.database_url(self.name, dataset), binding.sql,
                                   name=f"[data.{dataset}] sql")
                self._tables[dataset] = load_source(source, binding.schema_, self.name, dtype=binding.dtype)
            else:
                assert binding.path is not None
                self._tables[dataset] = load_table(binding.path, binding.schema_, self.name, binding.format,
                                                   dtype=binding.dtype)
            self._stamps[dataset] = stamp
        return dataset, self._tables[dataset]

    # --- requests -----------------------------------------------------------------------------------
    def handle(self, message: Message) -> Message:
        """Answer one request, its row blocks on this party's engine (handlers may run on any link thread)."""
        with use_engine(self.engine):
            return self._handle(message)

    def _handle(self, message: Message) -> Message:
        self._fault_hook(message.kind)
        try:
            if message.kind == "deploy.open_run":
                with self._open_lock:  # one at a time: a holdout split may reorder a cached table (R15-HLR-4)
                    return self._open(message)
            if message.kind == "deploy.close_run":
                return self._close(message)
            if message.kind == "consent.request":
                return self.consent.request(message)
            if message.kind == "consent.release":  # withdraw an approval of a job that never opened (R14-WEB-3)
                return self.consent.release(message)
            if message.kind == "consent.catalogue":
                return self.consent.catalogue(message)
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator as an error reply
            log.warning("party %s failed on %s: %s", self.name, message.kind, exc)
            return message.error_reply(exc)
        context = self._runs.get(message.run_id)
        if context is None:
            return message.error_reply(ValueError(
                f"party {self.name!r} has no open run {message.run_id!r} (deploy.open_run must come first)"))
        try:
            check_request(self.config.allow, self.name, message.kind, message.meta, context.job)
            if message.kind == "fit" and context.rounds is not None:
                context.rounds.admit(message.step, message.arrays, message.meta)
        except JobRefused as exc:
            self._refused(message, exc)
            return message.error_reply(exc)
        return context.app.handle(message)

    def _audit(self, run_id: str, kind: str, detail: dict[str, Any]) -> None:
        """An entry in this party's own signed audit log (its store), under the run's id."""
        try:
            self.store().log_event(run_id or "security", kind, detail)
        except Exception as exc:  # noqa: BLE001 - the refusal itself must not fail; the plain log has it
            log.error("party %s: could not write %s to its audit log: %s", self.name, kind, exc)

    def store(self) -> Any:
        """This party's own store (0600), opened once: its audit log and its parts of vertical models."""
        if self._store is None:
            from sampan.runtime.store import Store

            private_sqlite(self.config.store_url)
            self._store = Store.open(self.config.store_url)
        return self._store

    def _refused(self, message: Message, exc: JobRefused) -> None:
        log.warning("party %s refused %s of run %s (%s): %s", self.name, message.kind, message.run_id, exc.rule,
                    exc.reason)
        self._audit(message.run_id, "job_refused", {"request": message.kind, "rule": exc.rule, "reason": exc.reason,
                                                    "job": message.meta.get("job")})

    def _fault_hook(self, kind: str) -> None:
        if self._pause is not None and kind == self._pause[0]:  # a deterministic point for a test to act at
            self._seen["pause:" + kind] = self._seen.get("pause:" + kind, 0) + 1
            if self._seen["pause:" + kind] == self._pause[1]:
                log.error("fault injection: freezing on %s #%d", kind, self._pause[1])
                os.kill(os.getpid(), signal.SIGSTOP)
        if self._fault is None or kind != self._fault[0]:
            return
        self._seen[kind] = self._seen.get(kind, 0) + 1
        if self._seen[kind] == self._fault[1]:
            log.error("fault injection: exiting on %s #%d", kind, self._seen[kind])
            os._exit(17)

    def _open(self, message: Message) -> Message:
        meta = message.meta
        workflow = str(meta["workflow"])
        current = self._runs.get(message.run_id)
        if current is not None and current.workflow == workflow:
            return message.reply("deploy.opened", meta={"reopened": True})
        job = {**dict(meta.get("job") or {}), "workflow": workflow}
        dataset = self.dataset_name(meta.get("dataset"))
        columns = [c.name for c in self.config.data[dataset].schema_.features]
        try:
            check_job(self.config.allow, self.name, job, dataset, columns)
            reservation = self.consent.admit_run(message, dataset, job)  # its own approval, and every party's
        except JobRefused as exc:
            self._refused(message, exc)
            raise
        dataset, table = self.table(dataset)  # read only once the job is admitted
        record = job_record(self.name, job, dataset, columns)
        self._audit(message.run_id, "job_accepted", {"job": job, **record})
        log.info("party %s accepted run %s: %s", self.name, message.run_id, job_line(record))
        app = get_capability(workflow).party_app(self._setup(workflow, dataset, table, job, meta, reservation))
        spec = self.consent.approved_spec(message.run_id)  # the gate is the spec's rounds (R14-CONSENT2-1)
        gate = (RoundGate(self.config.party.state_dir, message.run_id, int(spec.rounds), self.name)
                if spec is not None and workflow == "horizontal" and job.get("model") != "gbdt" else None)
        self._runs[message.run_id] = _RunContext(workflow, dataset, app, job=job, rounds=gate)
        while len(self._runs) > MAX_OPEN_RUNS:
            self._runs.popitem(last=False)
        log.info("party %s opened run %s (%s, dataset %s)", self.name, message.run_id, workflow, dataset)
        return message.reply("deploy.opened", meta={"reopened": False})

    def _setup(self, workflow: str, dataset: str, table: PartyData, job: dict[str, Any],
               meta: Mapping[str, Any], reservation: JobReservation | None = None) -> PartySetup:
        """What the capability's `party_app` builds this party's side from (`sampan.core.PartySetup`): the same
        fields a simulation fills, from this organisation's own files, state folder and policy."""
        state = Path(self.config.party.state_dir)
        protections = set(job.get("protections") or ())
        # run keys (vertical channels, SecAgg) are signed by the organisation's certificate and checked against
        # the CA and CRL; a job that needs them without a CRL is refused (`_keys`)
        keyed = (bool(self.config.tls.crl) or workflow in KEYED_WORKFLOWS or "secure_aggregation" in protections
                 or (workflow == "checks" and bool(job.get("vertical"))))  # its PSI channels come from run keys
        identity, verifier = self._keys() if keyed else (None, None)
        if verifier is not None:  # peers' keys only from the partners (and bank) this party accepted
            verifier = PeerAllowList(verifier, self.name, job["parties"], label_holder=job.get("label_holder"))
        options: dict[str, Any] = {"max_evaluations": self.config.privacy.max_evaluations,
                                   # PSI would fork workers; a fork beside gRPC's threads can crash the child or
                                   # corrupt the parent's TLS state, so an agent blinds in its own thread
                                   "psi_workers": 1,
                                   # how its table's columns decode (workflows that read named columns: synthesis)
                                   "table_schema": self.config.data[dataset].schema_}
        if job.get("label_holder"):  # one partition of the customers per (dataset, bank), pinned across runs
            options["row_book"] = self._vertical_rows(dataset, str(job["label_holder"]))
            if job["label_holder"] == self.name:  # the bank computes its test customers itself (`bank_splits`)
                from sampan.vertical.bank_splits import SPLIT_KEY_FILE, load_split_key

                options["split_key"] = lambda: load_split_key(state / SPLIT_KEY_FILE)  # one per bank: all datasets
                options["max_test_fraction"] = self.config.privacy.max_test_fraction
                allow = self.config.allow  # the applicants files it reads (review R13-SCO-1): its own folder only
                options["applicants_dir"] = allow.applicants_dir if allow is not None else None
                options["applicants_id_columns"] = allow.applicant_id_columns if allow is not None else None
                if self.config.data[dataset].test_ids:  # its own test file
                    options["test_ids"] = self.config.data[dataset].test_ids
        if workflow in HOLDOUT_WORKFLOWS:  # data preparation that is the agent's own: its keyed holdout split
            # views of the cached table (reordered in place once), copies while another open run reads it
            shared = any(context.dataset == dataset for context in self._runs.values())
            data: Any = holdout_split(self.name, state, dataset, table, float(meta["test_fraction"]),
                                      self.config.privacy.max_test_fraction, shared=shared)
            # with a CRL always ready for SecAgg; without one only a job that claims none opens (and then the
            # party has no SecAgg client at all, so a coordinator that lied about it is refused)
            options["secagg"] = self._secagg_client(job, identity, verifier) if identity is not None else None
            policy = horizontal_policy(self.config, job, self._ledgers, reservation)
        else:
            data, policy = table, vertical_policy(self.config, job, self._ledgers, reservation)
        return PartySetup(self.name, data, job, identity=identity, verifier=verifier, policy=policy,
                          state_dir=state / STATE_FOLDERS.get(workflow, ""), registry=self.store(), deployed=True,
                          options=options)

    def _vertical_rows(self, dataset: str, label_holder: str) -> Any:
        """This agent's row book for (dataset, label holder) (`sampan.deploy.agent_rows.vertical_row_book`)."""
        return vertical_row_book(self.config, self.__dict__, self.name, dataset, label_holder)

    def _horizontal_policy(self, job: dict[str, Any]) -> Any:
        """The policy a horizontal run's handlers enforce (`sampan.deploy.run_budget.horizontal_policy`)."""
        return horizontal_policy(self.config, job, self._ledgers)

    def _vertical_policy(self, job: dict[str, Any] | None = None) -> Any:
        """The policy a vertical run's handlers enforce (`sampan.deploy.run_budget.vertical_policy`)."""
        return vertical_policy(self.config, job, self._ledgers)

    def _close(self, message: Message) -> Message:
        """The run ended (completed or cancelled): drop its handlers and its secure-aggregation state. Model
        parts were registered by the workflow's own save request, into this party's store."""
        self._runs.pop(message.run_id, None)
        self._forget_secagg(message.run_id)
        self.consent.settle(message.run_id, "closed")  # spend stays, the unspent reservation is released
        log.info("party %s closed run %s", self.name, message.run_id)
        return message.reply("deploy.closed", meta={})

    def _forget_secagg(self, run_id: str) -> None:
        """A closed run's secure aggregation state goes (`sampan.deploy.agent_keys.forget_secagg`)."""
        forget_secagg(self.config, run_id)

    def _keys(self) -> tuple[Any, Any]:
        """This organisation's run-key identity and the CA/CRL verifier (`sampan.deploy.agent_keys.run_keys`)."""
        if self._identity is None:
            self._identity = load_run_identity(self.config)
        return self._identity, run_verifier(self.config)

    def _secagg_client(self, job: dict[str, Any], identity: Any, verifier: Any) -> Any:
        """This party's SecAgg client for a job (`sampan.deploy.agent_keys.secagg_client`)."""
        return secagg_client(self.config, job, identity, verifier)

    # --- connection ---------------------------------------------------------------------------------
    def serve(self, stop: threading.Event | None = None) -> None:
        """Dial out and serve until `stop` is set or the coordinator refuses this party for good."""
        for name in self.config.data:  # fail fast, here, on bad data rather than in round 1
            self.table(name)
        self.link = open_link(self.config, self.handle)
        self.engine = make_engine(self.config.compute, party=self.name)
        try:
            self.link.serve_forever(stop)
        finally:
            self.engine.close()
            self.engine = LocalEngine()


def _stamp(path: str) -> Stamp | None:
    """Every file of a table's path (a file, a folder's files, a glob's matches) as (name, mtime, size): a job
    opened after the party replaced, added or removed a file reads the table anew (a scoring or serving job
    then answers from the party's current features; an erased customer is gone: review R15-DATA-5)."""
    return source_stamp(path)
