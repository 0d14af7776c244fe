"""Opt-in RR22 PSI through SecretFlow spu (two parties), the coordinator's side: refusals and the pump.

Why: ECDH PSI costs four X25519 multiplications per id pair, so it cannot beat the curve's rate (about 25k/s per
core here); RR22 (Raghuraman-Rindal 2022: a VOLE-based OPRF with an OKVS) is symmetric crypto and ~10x faster.
spu's implementation is a C++ library with its own network link, so each party runs it in a subprocess from
spu's own venv (`_rr22_worker.py`), its link on 127.0.0.1, and the link's bytes travel as sealed envelopes
through the coordinator (`psi_rr22_tunnel`). This module is the coordinator's side: it refuses what spu cannot
do before anything starts, then pumps envelopes between the two parties until both workers are done.

Protocol (A label holder = spu receiver, B partner = spu sender):
1. ``psi.rr22.offer``  A -> B: mode, |A|, id shape, A's id width, a fresh session id (sealed).
2. ``psi.rr22.accept`` B checks shapes, starts its worker and tunnel; -> A: |B|, shape, B's width (sealed).
3. ``psi.rr22.start``  A checks shapes, starts its worker and tunnel.
4. ``psi.rr22.pump``   repeatedly, B then A: each gets the other's sealed tunnel bytes and returns its own.
5. ``psi.rr22.finish`` B (mode both) reports a digest of its intersection sealed to A, while A maps its own
   result (``locate``: kept unpublished); then A checks B's digest equals its own (a wrong result fails
   closed), publishes its rows and reports |I| in mode both.
``psi.rr22.close`` ends the session at both parties whatever happened (worker killed, side files removed).

What each role learns: as `MODE_REVEALS` states; spu's RR22 is secure against semi-honest parties only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sampan.vertical.psi import PsiOutcome
from sampan.vertical.psi_points import PsiError
from sampan.wire import Message

__all__ = ["RR22_MODES", "RR22_REVEALS", "Rr22Unavailable", "refuse_unsupported", "run_rr22", "spu_python"]

RR22_MODES: tuple[str, ...] = ("both", "label_holder")

_COMMON = (
    "RR22 via SecretFlow spu 0.9.5 is secure against semi-honest parties only (a party that deviates from the "
    "protocol, e.g. encodes a crafted OKVS, is not covered; ECDH is the default). Both parties learn each other's "
    "set size, dominant id shape and longest id length in bytes (the id width both pad to). The coordinator "
    "relays sealed tunnel envelopes and learns their sizes and timing (which track the set sizes), nothing "
    "about any customer."
)
RR22_REVEALS: dict[str, str] = {
    "both": ("Private set intersection, mode 'both' (RR22 via spu, receiver = label holder, result broadcast to "
             "the partner). The label holder and the partner each learn which of their own customers are in the "
             "intersection; both hold it in one agreed order. The coordinator also learns the intersection size. "
             + _COMMON),
    "label_holder": ("Private set intersection, mode 'label_holder' (RR22 via spu, receiver = label holder, no "
                     "broadcast). Only the label holder learns which of its customers are in the intersection; the "
                     "partner learns only the label holder's set size. An empty intersection aborts the run, which "
                     "tells the partner and the coordinator that it is empty. " + _COMMON),
}

_PUMP_WAIT_AFTER_DATA = 0.05  # a party that just got bytes likely answers soon: wait for the answer ...
_PUMP_SETTLE = 0.01  # ... but only this long after its spu has taken them all (a one-way message has no answer,
# and the other party's bytes would wait the whole 50 ms: ~60 such waits, up to 3 s, at 10M ids)
_PUMP_WAIT_IDLE = 0.005


class Rr22Unavailable(PsiError):
    """The RR22 backend cannot run here (no spu venv) or cannot honour the request; nothing was started."""


class _Exchanger(Protocol):
    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]: ...


def spu_python() -> Path:
    """The spu venv's python: $SAMPAN_SPU_VENV, else `.venv-spu` at the repository root; a clear error if absent."""
    venv = os.environ.get("SAMPAN_SPU_VENV") or str(Path(__file__).resolve().parents[3] / ".venv-spu")
    python = Path(venv) / "bin" / "python"
    if not python.is_file():
        raise Rr22Unavailable(
            f"the RR22 PSI backend needs SecretFlow spu 0.9.5 in its own venv, and {venv} has none: run "
            "tools/install_spu.sh (it creates .venv-spu; ~1 GB, Python 3.11, Linux x86_64) or set SAMPAN_SPU_VENV "
            "to such a venv; or use the default ECDH backend")
    return python


def refuse_unsupported(mode: str, parties: int = 2, *, cardinality_only: bool = False) -> None:
    """Refuse, before anything starts, what RR22 via spu cannot honour (Rr22Unavailable names the option)."""
    if parties != 2:
        raise Rr22Unavailable(f"the RR22 PSI backend runs between exactly two parties (spu's RR22 is two-party), "
                              f"got {parties}; use the ECDH backend or star alignment (one RR22 run per partner)")
    if mode == "cardinality" or cardinality_only:
        raise Rr22Unavailable("the RR22 PSI backend cannot run mode 'cardinality' (spu reveals the intersection "
                              "itself to the receiver, not only its size); use the ECDH backend for it")
    if mode not in RR22_MODES:
        raise Rr22Unavailable(f"unknown PSI mode {mode!r} for the RR22 backend; expected one of {list(RR22_MODES)}")


def _ask(transport: _Exchanger, message: Message) -> Message:
    replies = list(transport.exchange([message]))
    if len(replies) != 1 or replies[0].kind != message.kind:
        raise PsiError(f"party {message.recipient!r} did not answer {message.kind!r}")
    return replies[0]


def run_rr22(transport: _Exchanger, run_id: str, a: str, b: str, mode: str = "both", step: int = 0, *,
             check_format: bool = True, timeout: float = 3600.0) -> PsiOutcome:
    """RR22 PSI between label holder `a` (spu receiver) and partner `b`; results stay at the parties, in the
    same places as the ECDH backend's (`PsiParty.rows`, `cardinality`, alignment tokens)."""
    if a == b:
        raise ValueError("PSI needs two different parties")
    refuse_unsupported(mode)  # spu itself is needed only at the parties: each checks its own before starting
    started = time.perf_counter()
    me = str(getattr(transport, "coordinator", "coordinator"))
    meta: dict[str, Any] = {"mode": mode, "check_format": bool(check_format), "timeout": float(timeout)}

    def ask(to: str, kind: str, peer: str, envelope: np.ndarray | None = None, **extra: Any) -> Message:
        arrays = {} if envelope is None else {"envelope": envelope}
        return _ask(transport, Message(run_id, step, me, to, kind, arrays, {**meta, "peer": peer, **extra}))

    try:
        offer = ask(a, "psi.rr22.offer", b)
        accept = ask(b, "psi.rr22.accept", a, offer.arrays["envelope"])
        ask(a, "psi.rr22.start", b, accept.arrays["envelope"])
        _pump(ask, a, b, started + timeout)
        # both map spu's output to rows at once (A keeps its rows unpublished), then A checks B's digest
        finish = [Message(run_id, step, me, b, "psi.rr22.finish", {}, {**meta, "peer": a}),
                  Message(run_id, step, me, a, "psi.rr22.finish", {}, {**meta, "peer": b, "locate": True})]
        done_b, located = list(transport.exchange(finish))
        if done_b.kind != "psi.rr22.finish" or located.kind != "psi.rr22.finish":
            raise PsiError(f"parties {b!r} and {a!r} did not answer 'psi.rr22.finish'")
        done_a = ask(a, "psi.rr22.finish", b, done_b.arrays.get("envelope"))
    finally:
        for party, peer in ((a, b), (b, a)):
            try:
                ask(party, "psi.rr22.close", peer)
            except Exception:  # noqa: BLE001 - best effort: each party also cleans up on its own deadline
                pass
    cardinality = done_a.meta.get("cardinality") if mode == "both" else None
    return PsiOutcome(mode=mode, parties=(a, b), sizes={a: int(offer.meta["n"]), b: int(accept.meta["n"])},
                      cardinality=None if cardinality is None else int(cardinality),
                      reveals=RR22_REVEALS[mode], seconds=time.perf_counter() - started)


def _pump(ask: Any, a: str, b: str, deadline: float) -> None:
    """Carry tunnel envelopes B <-> A until both workers are done; each party waits briefly for bytes to send."""
    pending: dict[str, np.ndarray | None] = {a: None, b: None}
    done = {a: False, b: False}
    while not (done[a] and done[b] and pending[a] is None and pending[b] is None):
        if time.perf_counter() > deadline:
            raise PsiError(f"RR22 PSI between {a!r} and {b!r} did not finish in time")
        for party, peer in ((b, a), (a, b)):
            envelope, pending[party] = pending[party], None
            if envelope is not None:
                reply = ask(party, "psi.rr22.pump", peer, envelope, wait=_PUMP_WAIT_AFTER_DATA, settle=_PUMP_SETTLE)
            else:
                reply = ask(party, "psi.rr22.pump", peer, None, wait=_PUMP_WAIT_IDLE)
            if "envelope" in reply.arrays:
                pending[peer] = reply.arrays["envelope"]
            done[party] = bool(reply.meta.get("done"))
