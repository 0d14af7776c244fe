"""The party kit for a verifier-operated Sampan party (in-process mode: the verifier and the platform share a process).

What it is, honestly: the verifier's party does not dial out over the network. `SampanKit.run` hands the party's
rows, the verifier's tap and its optional Byzantine hook to a *seat* (a rendezvous in this process, keyed by job and
party); Sampan's benchmark backend (`sampan.web.bench_api`) takes the seat, runs that party's real Sampan code
(`HorizontalParty` with its SecAgg+ client, or a vertical party) inside the job's simulated federation, and calls the
tap with every message the party receives and every reply it sends, as arrays in the clear, before the transport
encodes them (under secure aggregation the update the party sends is already masked: that is what the masking check
should see). Consequences the verifier must know: no wire exists between the kit and the platform, so bytes and
timing at the wire are not measurable for Sampan in this mode (the `connect` argument is ignored and `Party.connect`
is None), and the party's rows sit in the platform's process for the job. What the tap holds in this mode is what
the platform's process reported about itself: the catalogue says so in every outcome that rests on it
("self-reported", `catalogue.dataplane.qualify_self_reported`, R16-VERDICT-8); only deployed mode is observed by the
verifier on the wire.

Deployed mode: when the platform answers the registration with a `Party.connect` of protocol ``sampan-grpc+mtls``
(Sampan's backend with a consortium CA, see `sampan.web.bench_deployed`), the kit instead runs a real Sampan party
agent in a thread (`sampan_agent.run_agent`): gRPC with mutual TLS through the verifier's recording proxy, with the
same tap kinds and the same hook point.

Tap kinds: the model update is reported as ``"update"`` (Sampan's ``fit_result``: ``weights`` = global + delta and
``update`` = delta in the clear; ``masked`` and ``masked_update`` under secure aggregation), the party's clear input
to it as ``"update_clear"`` (taken just inside its SecAgg+ step, after its own DP3 clip and noise), every other
message under its Sampan kind (``fit``, ``secagg_keys``, ``evaluate``, ``psi_*``, ...); the round is the step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sampan.errors import SampanError
from sampan.verify.api import PartyConnect, TableData
from sampan.verify.kits import ClientTLS, KitError, NullTap, Tap, UpdateHook

PROTOCOL = "sampan-grpc+mtls"  # `Party.connect.protocol` of a deployed Sampan coordinator

__all__ = ["SampanKit", "Seat", "SeatError", "drop_seat", "seat"]


class SeatError(SampanError):
    """The job the verifier's party sat in failed or was stopped (names the party)."""

    category = "benchmark party"


@dataclass
class Seat:
    """One verifier-operated party of one job: what the kit delivers and what the backend reports back."""

    job_id: str
    party: str
    data: TableData | None = None
    tap: Tap = field(default_factory=NullTap)
    update_hook: UpdateHook | None = None
    ready: threading.Event = field(default_factory=threading.Event)   # the kit delivered its rows
    done: threading.Event = field(default_factory=threading.Event)    # the job ended (error None: succeeded)
    left: threading.Event = field(default_factory=threading.Event)    # the kit was stopped: the party is gone
    error: str | None = None

    def deliver(self, data: TableData, tap: Tap, update_hook: UpdateHook | None) -> None:
        if self.ready.is_set():
            raise KitError(f"party {self.party!r} of job {self.job_id!r} is already running")
        self.data, self.tap, self.update_hook = data, tap, update_hook
        self.ready.set()

    def finish(self, error: str | None = None) -> None:
        self.error = error
        self.done.set()


_SEATS: dict[tuple[str, str], Seat] = {}
_LOCK = threading.Lock()


def seat(job_id: str, party: str) -> Seat:
    """The seat of ``party`` in ``job_id`` (made on first use by either side)."""
    with _LOCK:
        return _SEATS.setdefault((job_id, party), Seat(job_id, party))


def drop_seat(job_id: str, party: str) -> None:
    """Forget a finished job's seat (the backend calls it once the kit has had time to read the outcome)."""
    with _LOCK:
        _SEATS.pop((job_id, party), None)


class SampanKit:
    """Runs the verifier's own Sampan party of a job (see the module docstring for what in-process means).

    ``update_hook(round, weights)`` replaces the weights the party is about to send (global model + its delta:
    coefficients, intercept last), with or without secure aggregation: it runs inside the party just before
    masking, after the party's own DP3 clipping (a party under the verifier's control need not clip)."""

    name = "sampan"

    def __init__(self, *, update_hook: UpdateHook | None = None) -> None:
        self.update_hook = update_hook

    def run(self, job_id: str, party: str, data: TableData, connect: PartyConnect | None, tls: ClientTLS | None,
            tap: Tap, stop: threading.Event) -> None:
        if connect is not None and connect.protocol == PROTOCOL:  # deployed: a real party agent on the wire
            from sampan.verify.platforms.sampan_agent import run_agent

            run_agent(job_id, party, data, connect, tls, tap, stop, self.update_hook)
            return
        place = seat(job_id, party)
        place.deliver(data, tap, self.update_hook)
        while not place.done.wait(0.05):
            if stop.is_set():
                place.left.set()
                return
        if place.error is not None:
            raise SeatError(f"party {party!r} of job {job_id!r}: {place.error}")
