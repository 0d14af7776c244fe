"""The table of capabilities: workflow name -> the `sampan.core.Capability` that runs it.

The runner and the party agents find a capability only here, by name, and import it lazily from
a ``"module:attribute"`` string: the runtime layer never imports `sampan.horizontal`,
`sampan.vertical` or `sampan.synth` directly (they sit beside each other, below the runtime), and
`sampan --help` does not pay for importing every protocol.
"""

from __future__ import annotations

import importlib
from typing import Any

from sampan.core.capability import Capability
from sampan.errors import ConfigError

__all__ = ["CAPABILITIES", "CapabilityError", "capability_names", "get_capability"]

CAPABILITIES: dict[str, str] = {
    "horizontal": "sampan.horizontal.capability:HORIZONTAL",
    "evaluation": "sampan.horizontal.capability:EVALUATION",
    "vertical": "sampan.vertical.capability:VERTICAL",
    "scoring": "sampan.vertical.capability:SCORING",
    "synthesis": "sampan.synth.capability:SYNTHESIS",
    "serving": "sampan.serve.deployed:SERVING",  # `sampan serve`'s session in a deployment
    "checks": "sampan.checks.capability:CHECKS",  # checks before training (issue 14 item 4)
}


class CapabilityError(ConfigError, LookupError):
    """No capability of that name, or its module cannot provide it; the message names both."""


def capability_names() -> list[str]:
    return sorted(CAPABILITIES)


def get_capability(name: str) -> Capability:
    """The capability registered as ``name`` (imported on first use)."""
    target = CAPABILITIES.get(name)
    if target is None:
        raise CapabilityError(f"unknown workflow {name!r}; known workflows: {', '.join(capability_names())}")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):  # the capability module itself is missing
            raise CapabilityError(f"workflow {name!r}: its capability module {module_name!r} is not available "
                                  f"({exc})") from exc
        raise  # a dependency of the capability is missing: let its own error speak
    capability: Any = getattr(module, attribute, None)
    if capability is None:
        raise CapabilityError(f"workflow {name!r}: {module_name!r} has no {attribute!r}")
    return capability
