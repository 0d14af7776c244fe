"""The workflow contract: what the one runner gives a coordinator program and what it gets back.

A `Workflow` is the coordinator's program for one kind of run (horizontal training, vertical
alignment and training, joint scoring, federated evaluation, federated synthesis). It reaches
parties only through ``ctx.transport`` and records everything through ``ctx.recorder``; it never
opens a store (a registered model it needs comes from ``ctx.recorder.registered_model``), never
builds parties and never knows whether the transport is in-process, a pool of processes or gRPC
with mutual TLS. The runner (`sampan.runtime.runner`) owns the run's life around
it: create, resume, status, model registration, receipt and report.

Resuming: a workflow reads ``ctx.recorder.last_checkpoint()`` at its start and continues after it.
Everything random is derived from ``ctx.seed`` (and the round/stage), except DP noise and
cryptographic keys/masks, which come from the OS CSPRNG.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sampan.core.transport import Transport
from sampan.errors import CancelledError

__all__ = [
    "RunCancelled", "Checkpoint", "ModelArtifact", "Progress", "RunContext", "RunRecorder", "Workflow",
    "WorkflowResult",
]

# progress(stage, info): "stage" {"stage": text}, "round" {...metrics}, "epoch" {...}, free-form otherwise
Progress = Callable[[str, Mapping[str, Any]], None]


class RunCancelled(CancelledError):
    """Raised by a workflow when ``ctx.cancelled()`` turned true; the runner records the run as cancelled."""


@dataclass(frozen=True)
class Checkpoint:
    """The last durable point of a run: its round (or stage number), state arrays and JSON metadata."""

    round: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


class RunRecorder(Protocol):
    """Where a workflow writes what it did; one run, bound to its id. Implemented over the run store.

    Every method is durable when it returns. ``checkpoint`` is one atomic write (round, state,
    metrics and an audit event), so a crash leaves either the previous or the new round.
    """

    run_id: str

    def checkpoint(self, round_number: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                   metrics: Mapping[str, Any], seconds: float,
                   events: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
        """``events``: the round's own audit entries (traffic, secure-aggregation summaries), written in the
        same transaction, so a crash never leaves them without their round (or the round without them)."""

    def last_checkpoint(self) -> Checkpoint | None: ...

    def event(self, kind: str, detail: Mapping[str, Any]) -> None:
        """An entry in the run's hash-chained audit log."""

    def info(self, key: str, value: Any) -> None:
        """Report/receipt material kept with the run (JSON-able)."""

    def stored_info(self) -> dict[str, Any]: ...

    def charge(self, ledger_json: str, detail: Mapping[str, Any]) -> None:
        """Persist the run's privacy ledger *before* the release it covers leaves (write-ahead)."""

    def ledger(self) -> str | None:
        """The run's persisted ledger (JSON), if any: a resumed run starts from it."""

    def registered_model(self, name: str, version: int | None = None) -> ModelArtifact:
        """A model from the coordinator's own registry (latest version when ``version`` is None), so a workflow
        that evaluates or scores a registered model resolves it at run time without opening a store."""


@dataclass
class RunContext:
    """Everything a workflow may use. ``config`` is the validated run config (`sampan.config.RunConfig`)."""

    run_id: str
    seed: int
    config: Any
    transport: Transport
    recorder: RunRecorder
    progress: Progress = field(default=lambda stage, info: None)
    coordinator: str = "coordinator"
    # an operator's cancel: workflows check it between rounds/stages and raise RunCancelled
    cancelled: Callable[[], bool] = field(default=lambda: False)

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise RunCancelled(f"run {self.run_id} cancelled")


@dataclass(frozen=True)
class ModelArtifact:
    """A model the coordinator may register: arrays plus JSON metadata (never pickle).

    Vertical model parts never reach the coordinator: each party registers its own part in its own
    store when the workflow asks it to (a ``<workflow>.save_model`` request), so they are not here.
    """

    name: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


@dataclass
class WorkflowResult:
    """What a finished workflow hands the runner: metrics for the status line, models to register,
    and report material (``info``, stored with the run; the report and receipt are built from the store)."""

    final_metrics: dict[str, Any]
    models: Sequence[ModelArtifact] = ()
    info: dict[str, Any] = field(default_factory=dict)
    budget_stop: str | None = None
    outcome: Any = None  # workflow-specific typed outcome for Python callers (e.g. the demo's tables)


class Workflow(ABC):
    """The coordinator's program for one kind of run."""

    #: the name in ``run.workflow`` and in the run store
    name: str = ""

    @abstractmethod
    def run(self, ctx: RunContext) -> WorkflowResult:
        """Drive the parties through ``ctx.transport`` until the run is complete (or budget-stopped)."""

    def total_rounds(self, config: Any) -> int:
        """For progress bars and the store's round counter."""
        return 1
