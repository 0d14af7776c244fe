"""What an operator asks a coordinator (operator certificate, `sampan submit` / `sampan runs ...`).

Submit a run (or resume one), Status of a run (with each of its parties' liveness: connected, silent or
disconnected, for how long), Cancel a run (a queued run ends "cancelled" at once; a running one when its
workflow next checks, between rounds or stages, and its parties then get `deploy.close_run`). `attach`
is the client polling Status, so it survives a coordinator restart.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sampan.config import ConfigError
from sampan.deploy.config import RunSpec, parse_run_spec
from sampan.runtime.runner import RESUMABLE
from sampan.runtime.seeds import fresh_seed
from sampan.runtime.store import StoreError
from sampan.transport.grpc_hub import Identity
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.deploy.config import CoordinatorConfig
    from sampan.runtime.store import Store
    from sampan.transport.grpc_hub import Hub

__all__ = ["OperatorCalls", "TERMINAL"]

log = logging.getLogger("sampan.deploy.coordinator")
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class OperatorCalls:
    """Mixin of `Coordinator`: the handlers of its operator calls (they run on the hub's executor threads)."""

    _cancel_lock = threading.Lock()

    if TYPE_CHECKING:  # what the host class (`Coordinator`) sets; declared here for the type checker only
        config: CoordinatorConfig
        store: Store
        hub: Hub
        waiting: dict[str, list[str]]
        current: str | None
        _cancelled: set[str]
        serving: set[str]

        def _enqueue(self, run_id: str) -> None: ...

    def submit(self, identity: Identity, message: Message) -> Message:
        resume = message.meta.get("resume")
        if resume:
            row = self.store.get_run(str(resume))
            if row.status not in RESUMABLE or "deploy" not in (row.config or {}):
                raise StoreError(f"run {resume!r} is {row.status}; only deployed runs in {sorted(RESUMABLE)} resume")
            self.store.log_event(row.run_id, "resume_requested", {"by": identity.name})
            self._enqueue(row.run_id)
            return message.reply("deploy.submitted", meta={"run_id": row.run_id, "resumed": True})
        data = dict(message.meta.get("config") or {})
        run_section = dict(data.get("run") or {})
        run_section.pop("store", None)
        run_section["report_dir"] = str(self.config.coordinator.report_dir)
        data["run"] = run_section
        data["deploy"] = {**dict(data.get("deploy") or {}), "submitted_by": identity.name}  # parties check it
        spec = parse_run_spec(data, source=f"run submitted by {identity.name}")
        parties = self._parties(spec)
        seed = spec.config.run.seed if spec.config.run.seed is not None else fresh_seed()
        from sampan.runtime.capabilities import get_capability

        total = get_capability(spec.workflow).workflow(spec.config).total_rounds(spec.config)
        run_id = self.store.create_run(name=spec.config.run.name, workflow=spec.workflow, seed=seed,
                                       config=spec.stored, total_rounds=total)
        self.store.log_event(run_id, "submitted", {"by": identity.name, "parties": parties})
        log.info("run %s (%s, %s) submitted by %s for %s", run_id, spec.config.run.name, spec.workflow,
                 identity.name, ", ".join(parties))
        self._enqueue(run_id)
        return message.reply("deploy.submitted", meta={"run_id": run_id, "resumed": False})

    def status(self, identity: Identity, message: Message) -> Message:
        row = self.store.get_run(str(message.meta.get("run_id")))
        info = row.info or {}
        parties = list(((row.config or {}).get("deploy") or {}).get("parties") or self.hub.party_names)
        waiting = self.waiting.get(row.run_id)
        return message.reply("deploy.status", meta={
            "run_id": row.run_id, "name": row.name, "workflow": row.workflow, "status": row.status,
            "round": row.current_round, "total_rounds": row.total_rounds, "error": row.error,
            "final_metrics": info.get("final_metrics"), "model": info.get("model"),
            "connected": self.hub.connected(), "parties": self.hub.health(parties),
            "waiting_for": waiting, "current": self.current == row.run_id or row.run_id in self.serving,
            "cancel_requested": row.run_id in self._cancelled})

    def cancel(self, identity: Identity, message: Message) -> Message:
        run_id = str(message.meta.get("run_id"))
        row = self.store.get_run(run_id)
        if row.status in TERMINAL:
            raise StoreError(f"run {run_id!r} is already {row.status}; only a queued or running run can be cancelled")
        self.store.log_event(run_id, "cancel_requested", {"by": identity.name})
        log.warning("run %s: cancel requested by %s", run_id, identity.name)
        with self._cancel_lock:
            self._cancelled.add(run_id)
            running = self.current == run_id or run_id in self.serving
        if not running:  # queued (or interrupted): it ends now, and the worker skips it
            self.store.set_status(run_id, "cancelled", error=f"cancelled by {identity.name} before it ran")
        return message.reply("deploy.cancelled", meta={"run_id": run_id, "running": running})

    def _parties(self, spec: RunSpec) -> list[str]:
        members = self.hub.party_names
        parties = list(spec.deploy.parties) if spec.deploy.parties else list(members)
        unknown = [p for p in parties if p not in members]
        if unknown:
            raise ConfigError(f"parties {unknown} are not members of this federation ({members})")
        if spec.deploy.label_holder and spec.deploy.label_holder not in parties:
            raise ConfigError(f"label holder {spec.deploy.label_holder!r} is not among the run's parties {parties}")
        return parties

    def is_cancelled(self, run_id: str) -> bool:
        """The runner's `cancelled` callback for a running run."""
        return run_id in self._cancelled

