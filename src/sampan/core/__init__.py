"""Interfaces only: Message handling (PartyApp, Handler, Mod), Transport, Relay, Workflow, RunRecorder, Capability.

May import: sampan.wire, sampan.errors (and numpy). Everything else in Sampan builds on these; they know no store,
no CLI, no concrete transport and no protocol.
"""

from sampan.core.capability import Capability, PartySetup
from sampan.core.party import Handler, Mod, PartyApp
from sampan.core.relay import Relay
from sampan.core.transport import Endpoint, PartyError, TrafficLog, Transport, raise_for_error
from sampan.core.workflow import (
    Checkpoint,
    ModelArtifact,
    Progress,
    RunCancelled,
    RunContext,
    RunRecorder,
    Workflow,
    WorkflowResult,
)

__all__ = [
    "Capability", "Checkpoint", "Endpoint", "Handler", "Mod", "ModelArtifact", "PartyApp", "PartyError",
    "PartySetup", "Progress", "Relay", "RunCancelled", "RunContext", "RunRecorder", "TrafficLog", "Transport",
    "Workflow", "WorkflowResult", "raise_for_error",
]
