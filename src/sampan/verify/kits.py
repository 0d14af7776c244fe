"""Party kits: the code the verifier runs for its own party of an evaluation, one per platform.

The verifier runs at least one party of every evaluation itself (operated_by="verifier"), so it sees in the clear
what that party sends and receives: the kit calls `tap.sent(kind, round, payload)` with each message *before* any
encryption and `tap.received(...)` with each one it got. Bytes and timing come from the verifier's recording proxy,
never from the kit or the platform. A kit may be made Byzantine with `update_hook(round, weights) -> weights`: the
weights the party is about to send are replaced by what the hook returns (sign flip, scaling, ALIE, backdoor: the
attacks live in `sampan.audit`; the kit only gives the hook). A platform without a kit gets the black-box tests only.

Kits are found by name with `get_kit(name, update_hook=...)`; the modules load lazily, so a kit whose optional
extra is missing (Flower) fails only when asked for, with a clear message.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from sampan.errors import ConfigError
from sampan.verify.api import PartyConnect, TableData

UpdateHook = Callable[[int, np.ndarray], np.ndarray]
"""(round, weights) -> weights actually sent; the layout of `weights` is the kit's (documented per kit)."""


class KitError(ConfigError):
    """A party kit that does not exist or cannot be loaded (names the kit and what is missing)."""


@dataclass(frozen=True)
class ClientTLS:
    """The verifier party's TLS material: its certificate and key (PEM) and the CA it trusts for the server.

    `ca_pem` None means: trust `PartyConnect.ca_pem` (what the platform said its server presents).
    """

    cert_pem: str | None = None
    key_pem: str | None = None
    ca_pem: str | None = None
    crl_pem: str | None = None  # the consortium CA's CRL (a party that checks its peers' run keys needs it)


@runtime_checkable
class Tap(Protocol):
    """Sees each message of the verifier's party in the clear (called by the kit, before encryption)."""

    def sent(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None: ...

    def received(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None: ...


@dataclass(frozen=True)
class TapMessage:
    """One message as the party saw it: its kind, the round, and copies of its arrays."""

    direction: str  # "sent" | "received"
    kind: str
    round: int
    payload: dict[str, np.ndarray]


@dataclass
class RecordingTap:
    """A Tap that keeps every message (copies, so a kit reusing its buffers cannot change the record).

    The verifier reads it after a job: `updates()` for gradient inversion and the masking check.
    """

    messages: list[TapMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _keep(self, direction: str, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        copied = {str(k): np.array(v, copy=True) for k, v in payload.items()}
        with self._lock:
            self.messages.append(TapMessage(direction, kind, int(round), copied))

    def sent(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        self._keep("sent", kind, round, payload)

    def received(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        self._keep("received", kind, round, payload)

    def of(self, direction: str, kind: str) -> list[TapMessage]:
        """The messages of one direction and kind, in the order they happened."""
        with self._lock:
            return [m for m in self.messages if m.direction == direction and m.kind == kind]

    def updates(self) -> dict[int, dict[str, np.ndarray]]:
        """What the party sent as its model update, per round (the last one if a round has several)."""
        return {m.round: m.payload for m in self.of("sent", "update")}

    def rounds(self) -> list[int]:
        """The rounds in which the party sent anything, ascending."""
        with self._lock:
            return sorted({m.round for m in self.messages if m.direction == "sent"})


class NullTap:
    """A Tap that keeps nothing (a kit run outside an evaluation)."""

    def sent(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        return None

    def received(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        return None


@runtime_checkable
class PartyKit(Protocol):
    """Runs one verifier-operated party of a job until the job ends or `stop` is set (called in a thread).

    Raises a SampanError naming the party when the platform refuses it or the job fails.
    """

    name: str

    def run(self, job_id: str, party: str, data: TableData, connect: PartyConnect, tls: ClientTLS | None,
            tap: Tap, stop: threading.Event) -> None: ...


# name -> "module:attribute" (a class or factory called as factory(update_hook=hook))
KITS: dict[str, str] = {
    "weak": "sampan.verify.platforms.weak:WeakKit",
    "sampan": "sampan.verify.platforms.sampan:SampanKit",
    "flower": "sampan.verify.platforms.flower:FlowerKit",
}


def get_kit(name: str, *, update_hook: UpdateHook | None = None) -> PartyKit:
    """The party kit registered as `name`, ready to run (Byzantine if `update_hook` is given)."""
    target = KITS.get(name)
    if target is None:
        raise KitError(f"no party kit named {name!r} (known kits: {', '.join(sorted(KITS))})")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise KitError(f"party kit {name!r} cannot be loaded ({module_name}): {exc}; "
                       "is its optional extra installed?") from exc
    factory = getattr(module, attribute, None)
    if factory is None:
        raise KitError(f"party kit {name!r}: {module_name} has no {attribute}")
    kit: PartyKit = factory(update_hook=update_hook)
    return kit


__all__ = ["KITS", "ClientTLS", "KitError", "NullTap", "PartyKit", "RecordingTap", "Tap", "TapMessage",
           "UpdateHook", "get_kit"]
