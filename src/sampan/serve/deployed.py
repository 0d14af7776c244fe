"""`sampan serve` in a deployment: a `serving` job at the coordinator, the bank's agent hosted in the service.

Why this shape: parties only dial out, so neither the service nor the coordinator can call a partner; the
coordinator drives waves over the streams the parties opened. The operator submits a ``serving`` job
(run.workflow = "serving", [scoring] model = the trained vertical run, kind), like any job: each party checks
it against its `[allow]` list, which must name ``serving`` in ``workflows`` AND the model run in
``serving_models`` (explicit consent: a default-open list serves nothing). The coordinator keeps the job open
on its own thread (`ServingWorkflow`: the `sampan.serve.session.ServingDriver` loop) and relays each batch
as one exchange of the joint-scoring protocol (ids sealed to the partners, partial scores masked and sealed
to the bank: the coordinator sees batch sizes and timings only; an unknown applicant is answered alike).

The bank's `sampan serve` process IS the bank's agent while it serves (`[serve] agent = "party.toml"`): it
dials out with the bank's own certificate (`ServingAgent`, a `PartyAgent`), so the HTTP requests and the
bank's handlers share one process and the ids never leave it. When the service stops, the bank answers the
next idle ``serve.next`` with ``closed``: the job completes and every party closes it (`deploy.close_run`).
A partner answers from its feature table as its agent holds it when the job opens (`PartyAgent.table`):
after the table changes, the operator re-submits the serving job (restart the partner's agent first).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.core.workflow import Workflow, WorkflowResult
from sampan.deploy.party_agent import PartyAgent
from sampan.errors import ConfigError
from sampan.serve.session import BankQueue, ServingDriver, SessionError
from sampan.vertical.capability import scoring_job_of, scoring_receipt, vertical_party
from sampan.wire import Message

__all__ = ["SERVING", "ServingAgent", "ServingHost", "ServingWorkflow", "DeployedSession", "host", "REVEALS"]

log = logging.getLogger("sampan.serve.deployed")
REVEALS = ("Serving job: the coordinator learns each exchange's batch size and timing (never an id or a score); "
           "a partner, the registration numbers queried; the bank, the scores (`sampan.serve.deployed`).")
MAX_FAILURES = 20  # consecutive failed exchanges before the job gives up (a partner gone for good)
STALE_S = 3.0  # a queue the coordinator has not polled for this long is not served (the job failed or was cut)

_HOSTS: dict[str, ServingHost] = {}
_HOSTS_LOCK = threading.Lock()


@dataclass
class ServingHost:
    """What the bank's `sampan serve` process offers its agent: the serving job it hosts (model run, kind) and,
    once that job opened, the bank's queue the HTTP requests wait in."""

    bank: str
    model_run: str
    kind: str = "lr"
    max_batch: int = 256
    # the bank's agent answers one request at a time: while its idle ``serve.next`` waits, the bank's requests of
    # other jobs wait too, so the long-poll is short (about 50 idle polls a second; a request wakes it at once)
    wait_s: float = 0.02
    queue: BankQueue | None = None
    run_id: str | None = None
    closing: bool = False
    opened: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)

    def attach(self, party: Any, job: Mapping[str, Any]) -> None:
        """The serving job opened at the bank: its handlers get the queue (only the job this service hosts)."""
        if (str(job.get("model_run")), str(job.get("model_kind") or "lr")) != (self.model_run, self.kind):
            raise ValueError(f"party {self.bank!r}: its `sampan serve` hosts {self.model_run!r} ({self.kind}); the "
                             f"serving job names {job.get('model_run')!r} ({job.get('model_kind')})")
        self.queue = BankQueue(party, self.kind, self.max_batch, self.wait_s, closing=self.closing)
        self.closed.clear()


def host(serving: ServingHost) -> ServingHost:
    """Register this process's serving host (one per bank name)."""
    with _HOSTS_LOCK:
        _HOSTS[serving.bank] = serving
    return serving


def hosted(bank: str) -> ServingHost:
    with _HOSTS_LOCK:
        found = _HOSTS.get(bank)
    if found is None:
        raise ValueError(f"party {bank!r}: a serving job opens only at a bank whose agent runs inside `sampan serve` "
                         "([serve] agent = its party.toml); this agent hosts no scoring service")
    return found


class ServingAgent(PartyAgent):
    """The bank's agent inside `sampan serve`: a `PartyAgent` that tells the host when its serving job opens and
    closes (every other job it answers as the plain agent does)."""

    def __init__(self, config: Any, serving: ServingHost) -> None:
        super().__init__(config)
        self.serving = serving

    def _open(self, message: Message) -> Message:
        reply = super()._open(message)
        if message.meta.get("workflow") == "serving":
            self.serving.run_id = message.run_id
            self.serving.opened.set()
        return reply

    def _close(self, message: Message) -> Message:
        reply = super()._close(message)
        if message.run_id == self.serving.run_id:
            self.serving.queue, self.serving.run_id = None, None
            self.serving.opened.clear()
            self.serving.closed.set()
        return reply


class ServingWorkflow(Workflow):
    """The coordinator's side: keys, every party loads its part, then one exchange per batch until the bank's
    service closes or an operator cancels (`sampan runs cancel`)."""

    name = "serving"

    def run(self, ctx: Any) -> WorkflowResult:
        job = scoring_job_of(ctx.config)
        driver = ServingDriver(ctx.transport, bank=job.label_holder, partners=list(job.partners),
                               model_run=job.model_run, kind=job.kind, run_id=ctx.run_id)
        ctx.recorder.info("receipt", serving_receipt(job))  # stored at once: a cancelled job has it too
        ctx.progress("stage", {"stage": "serving: run keys, loading the model parts"})
        driver.open()
        ctx.progress("stage", {"stage": f"serving {job.model_run} ({job.kind}) for {job.label_holder}"})
        failures = scored = 0
        while not driver.closed:
            ctx.check_cancelled()
            try:
                scored += driver.step()
                failures = 0
            except Exception as exc:  # one batch failed (its requests got the error); the session goes on
                failures += 1
                log.warning("serving run %s: an exchange failed (%d in a row): %s", ctx.run_id, failures, exc)
                if failures >= MAX_FAILURES:
                    raise
                time.sleep(0.05)
        outcome = {"exchanges": driver.exchanges, "scored": scored, "model_run": job.model_run, "kind": job.kind}
        return WorkflowResult(final_metrics={"scored": scored}, info={"serving": outcome}, outcome=outcome)


def serving_receipt(job: Any) -> dict[str, Any]:
    """A scoring job's terms, for a standing session: the ids come from the bank's HTTP clients, sealed."""
    terms = scoring_receipt(job)
    start = "vgb.score_start" if job.kind == "gbdt" else "score.start"
    terms["reveals"].update({
        start: "each partner learns the registration number(s) the bank's clients asked about (who applied), as "
               "with a credit-reference query; the coordinator relays them sealed to each partner, never in clear",
        "coordinator": "the coordinator learns the parties, how many applicants each exchange carried and when "
                       "(the bank's request rate); never an id, a score or a PD",
        "serve.next": REVEALS})
    return terms


@dataclass(frozen=True)
class _ServingCapability:
    name: str = "serving"

    def workflow(self, config: Any) -> Workflow:
        return ServingWorkflow()

    def party_app(self, setup: PartySetup) -> PartyApp:
        """A partner: its vertical handlers (load its part, answer partial scores). The bank: the same plus the
        serving queue, only inside `sampan serve` (`hosted`)."""
        party = vertical_party(setup)
        if setup.name == setup.job.get("label_holder"):
            hosted(setup.name).attach(party, setup.job)
        return party.app

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        """A serving job has no simulation: in one process `sampan serve` without `agent` serves the same model."""
        raise ConfigError("run.workflow = 'serving' runs in a deployment only (submit it to the coordinator; the bank "
                          "runs `sampan serve` with [serve] agent); to try it in one process, `sampan serve` with "
                          "vertical_run and no agent simulates the partners")


SERVING = _ServingCapability()


class DeployedSession:
    """What `VerticalBackend` holds in a deployment: the host's queue while the serving job is open."""

    def __init__(self, serving: ServingHost, agent: ServingAgent, stop: threading.Event,
                 thread: threading.Thread) -> None:
        self.serving, self.agent, self._stop, self._thread = serving, agent, stop, thread
        self.last_error: BaseException | None = None

    def live(self) -> bool:
        """The serving job is open AND the coordinator polls the bank's queue (a failed job stops polling)."""
        queue = self.serving.queue
        return queue is not None and time.monotonic() - queue.last_poll < STALE_S

    @property
    def queue(self) -> BankQueue:
        queue = self.serving.queue
        if queue is None or not self.live():
            raise SessionError(f"no serving job of {self.serving.model_run!r} is open at {self.serving.bank!r}: the "
                               "operator submits one (run.workflow = 'serving') and every partner's [allow] accepts it")
        return queue

    def score(self, applicants: list[str], timeout_s: float = 30.0) -> list[dict[str, Any]]:
        return self.queue.submit(applicants).result(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """The next idle ``serve.next`` answers ``closed``: the job completes and is closed at every party; then
        the agent's link stops."""
        self.serving.closing = True
        queue = self.serving.queue
        if queue is not None:
            queue.closing = True
            queue.wake()
            self.serving.closed.wait(timeout_s)
        self._stop.set()
        if self.agent.link is not None:
            self.agent.link.close()
        self._thread.join(timeout_s)


def start_hosted_agent(party_toml: Any, model_run: str, kind: str, max_batch: int) -> DeployedSession:
    """The bank's agent dialling out from this process, hosting the serving job of ``model_run``."""
    from sampan.deploy.config import load_party_config

    config = load_party_config(party_toml)
    serving = host(ServingHost(config.party.name, model_run, kind, max_batch))
    agent = ServingAgent(config, serving)
    stop = threading.Event()
    thread = threading.Thread(target=agent.serve, args=(stop,), name="sampan-serve-agent", daemon=True)
    thread.start()
    return DeployedSession(serving, agent, stop, thread)
