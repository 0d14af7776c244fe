"""Run the horizontal workflow directly over a store (tests that drive a transport of their own)."""

from __future__ import annotations

from typing import Any

from sampan.core.workflow import RunContext
from sampan.horizontal.workflow import HorizontalWorkflow, RunOutcome
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.runner import hook_progress


def run_workflow(transport: Any, store: Any, run_id: str, config: Any, seed: int, progress: Any = None) -> RunOutcome:
    """`HorizontalWorkflow(config).run(ctx)` with a `StoreRecorder`; the typed outcome (model, histogram, privacy)."""
    ctx = RunContext(run_id=run_id, seed=seed, config=config, transport=transport,
                     recorder=StoreRecorder(store, run_id), progress=hook_progress(progress))
    return HorizontalWorkflow(config).run(ctx).outcome
