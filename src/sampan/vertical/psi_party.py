"""Entity alignment by PSI, a party's side: the handlers that blind, exchange and match points, and align rows.

Why apart: this is what runs inside each party (registered on its PartyApp); the coordinator's side and
the protocol's statement are in `sampan.vertical.psi`, the curve arithmetic in `psi_points`, the compact
ids in `psi_ids`, the bounded parts a payload travels in in `psi_parts`.

What each role learns: exactly what `sampan.vertical.psi` states (`MODE_REVEALS`, `ALIGNMENT_REVEALS`); this
module is the party's side of that protocol: its ids stay here, only blinded points leave, sealed to the peer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sampan.crypto.channel import SealedChannels
from sampan.vertical._parallel import ParallelError
from sampan.vertical.psi import MODES
from sampan.vertical.psi_ids import CompactIds, compact_ids
from sampan.vertical.psi_parts import MAX_ROWS, PART_ROWS, Inbox, Outbox, count_parts
from sampan.vertical.psi_points import (
    HASH_TO_CURVE,
    PsiError,
    _check_points,
    _hash_and_blind,
    blind,
    match_tokens,
)
from sampan.wire import Message

__all__ = ["PsiParty"]

log = logging.getLogger("sampan.vertical.psi")


def _new_scalar() -> X25519PrivateKey:
    """A fresh per-session secret (32 bytes of OS randomness); lives only in this object."""
    return X25519PrivateKey.from_private_bytes(os.urandom(32))


def _secure_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation from the OS CSPRNG (sort 64-bit random keys)."""
    return np.argsort(np.frombuffer(os.urandom(8 * n), dtype=np.uint64), kind="stable")



class _Registry(Protocol):
    """What `PsiParty.register` needs of a PartyApp."""

    def register(self, kind: str, handler: Callable[[Message], Message]) -> None: ...


@dataclass
class _Session:
    """One PSI run with one peer: the scalar lives here until its last multiplication."""

    mode: str
    role: str  # "a" (label holder) or "b" (partner)
    key: X25519PrivateKey | None
    perm: np.ndarray | None = None  # sent position -> own row
    doubled_peer: np.ndarray | None = None  # A: H(b)^(beta alpha) in B's sent order
    peer_n: int = 0


class PsiParty:
    """One party's side of PSI: its ids stay here; only blinded points leave, sealed to the peer."""

    def __init__(self, name: str, ids: Any, *, workers: int | None = None, part_rows: int = PART_ROWS) -> None:
        if part_rows < 1:
            raise ValueError("part_rows must be at least 1")
        self.name = name
        self.part_rows = int(part_rows)
        self.ids: Any = ids  # as given (list, numpy, pyarrow); compacted once, then dropped (`_prepare`)
        self.workers = workers
        self.channels: SealedChannels | None = None
        self.rows: dict[str, np.ndarray] = {}
        self.cardinality: dict[str, int] = {}
        self.peer_sizes: dict[str, int] = {}
        self.aligned_rows: np.ndarray | None = None
        self._tokens: dict[str, np.ndarray] = {}  # peer -> doubly blinded tokens, aligned with rows[peer]
        self._sessions: dict[str, _Session] = {}
        self._prepared: CompactIds | None = None
        self._outbox: dict[str, Outbox] = {}  # peer -> a step's payload still being pulled
        self._inbox: dict[str, Inbox] = {}  # peer -> a step's payload still arriving

    def register(self, app: _Registry) -> PsiParty:
        for kind, handler in (("psi.offer", self._offer), ("psi.accept", self._accept),
                              ("psi.blind", self._blind), ("psi.respond", self._respond),
                              ("psi.finish", self._finish), ("psi.align", self._align),
                              ("psi.aligned", self._aligned), ("psi.part", self._part), ("psi.pull", self._pull)):
            app.register(kind, handler)
        return self

    # helpers
    def _prepare(self) -> CompactIds:
        """The ids in compact form (fixed-width UTF-8 array); the caller's copy is released once compacted."""
        if self._prepared is None:
            self._prepared = compact_ids(self.ids, self.name)
            self.ids = None
        return self._prepared

    def _channels(self) -> SealedChannels:
        if self.channels is None:
            raise PsiError(f"party {self.name!r}: no sealed channels set up for this run")
        return self.channels

    def _seal(self, request: Message, peer: str, kind: str, arrays: dict[str, np.ndarray] | None = None,
              meta: dict[str, Any] | None = None) -> np.ndarray:
        inner = Message(request.run_id, request.step, self.name, peer, kind, arrays or {}, meta or {})
        return self._channels().seal(peer, inner)

    def _open(self, request: Message, peer: str, kind: str) -> Message:
        if "envelope" not in request.arrays:
            raise PsiError(f"party {self.name!r}: {request.kind} carries no envelope from {peer!r}")
        inner = self._channels().open(peer, request.arrays["envelope"])
        if inner.kind != kind:
            raise PsiError(f"party {self.name!r}: expected {kind!r} from {peer!r}, got {inner.kind!r}")
        return inner

    def _send(self, request: Message, peer: str, kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any],
              reply_meta: dict[str, Any] | None = None) -> Message:
        """Reply with part 0 of a step's payload; the rest waits in the outbox for `psi.pull` (bounded messages)."""
        box = Outbox(kind, arrays, meta, self.part_rows, count_parts(arrays, self.part_rows))
        part_arrays, part_meta = box.part(0)
        envelope = self._seal(request, peer, kind, part_arrays, part_meta)
        if box.parts > 1:
            self._outbox[peer] = box
        else:
            self._outbox.pop(peer, None)
        return request.reply(kind, {"envelope": envelope},
                             {**(reply_meta or {}), **({"parts": box.parts} if box.parts > 1 else {})})

    def _receive(self, request: Message, peer: str, kind: str) -> Message:
        """The step's whole payload: earlier parts (`psi.part`) joined with the last one, which this request carries."""
        inner = self._open(request, peer, kind)
        box = self._inbox.pop(peer, None)
        if box is None:
            box = Inbox.start(self.name, peer, inner, self._expected_rows(peer, inner.kind))
        box.add(self.name, peer, inner)
        return box.message(self.name, peer, inner)

    def _part(self, request: Message) -> Message:
        """Any but the last part of a peer's payload, checked and written into place (the last comes with its step)."""
        peer = str(request.meta["peer"])
        if "envelope" not in request.arrays:
            raise PsiError(f"party {self.name!r}: psi.part carries no envelope from {peer!r}")
        inner = self._channels().open(peer, request.arrays["envelope"])
        if inner.kind not in ("psi.accept", "psi.blind", "psi.respond", "psi.align"):
            raise PsiError(f"party {self.name!r}: {peer!r} sent a part of {inner.kind!r}, which has no parts")
        box = self._inbox.get(peer)
        if inner.meta.get("part") == 0 and box is None:
            box = self._inbox[peer] = Inbox.start(self.name, peer, inner, self._expected_rows(peer, inner.kind))
        elif box is None:
            raise PsiError(f"party {self.name!r}: a part from {peer!r} arrived before the first one")
        try:
            box.add(self.name, peer, inner)
            if box.complete:
                raise PsiError(f"party {self.name!r}: the last part of {peer!r}'s {box.kind} came as psi.part")
        except PsiError:
            del self._inbox[peer]
            raise
        return request.reply("psi.part")

    def _expected_rows(self, peer: str, kind: str) -> dict[str, tuple[int, int]]:
        """The arrays a peer's `kind` payload carries and the (least, most) rows of each, from what this party
        already knows: its own set's size, the size the sealed offer announced (R15-PSI-3)."""
        if kind == "psi.accept":  # the label holder learns |B| from this very payload: any non-empty set
            self._session(peer, "a")
            return {"points": (1, MAX_ROWS)}
        if kind == "psi.blind":
            b = self._session(peer, "b")
            own = len(self._prepare())
            return {"points": (b.peer_n, b.peer_n), **({"peer_points": (own, own)} if b.mode == "both" else {})}
        if kind == "psi.respond":  # A's own points, raised to beta (reshuffled in mode cardinality)
            self._session(peer, "a")
            own = len(self._prepare())
            return {"points": (own, own)}
        if kind == "psi.align":  # the aligned customers: at most this party's intersection with the label holder
            self._channels().require_role(peer, "label_holder", "psi.aligned")
            if peer not in self._tokens:
                raise PsiError(f"party {self.name!r}: no mode-'both' PSI result with {peer!r} to align on")
            return {"tokens": (1, len(self._tokens[peer]))}
        raise PsiError(f"party {self.name!r}: {peer!r} sent a payload of {kind!r}, which has no parts")

    def _pull(self, request: Message) -> Message:
        """The next part of this party's pending payload for `peer`, sealed to it; parts leave once, in order."""
        peer = str(request.meta["peer"])
        box = self._outbox.get(peer)
        if box is None or request.meta.get("part") != box.next:
            raise PsiError(f"party {self.name!r}: no part {request.meta.get('part')!r} waiting for {peer!r}")
        arrays, meta = box.part(box.next)
        envelope = self._seal(request, peer, box.kind, arrays, meta)
        box.next += 1
        if box.next == box.parts:
            del self._outbox[peer]
        return request.reply("psi.pull", {"envelope": envelope})

    def _session(self, peer: str, role: str) -> _Session:
        session = self._sessions.get(peer)
        if session is None or session.role != role:
            raise PsiError(f"party {self.name!r}: no PSI session with {peer!r} in progress")
        return session

    def _peer_points(self, inner: Message, name: str, n: int | None, peer: str) -> np.ndarray:
        try:
            points = _check_points(inner.arrays[name])
        except (KeyError, ValueError) as exc:
            raise PsiError(f"party {self.name!r}: malformed points from {peer!r}: {exc}") from None
        if n is not None and len(points) != n:
            raise PsiError(f"party {self.name!r}: {peer!r} sent {len(points)} points, expected {n}")
        return points

    def _blind_peer(self, points: np.ndarray, key: X25519PrivateKey, peer: str) -> np.ndarray:
        try:
            return blind(points, key, workers=self.workers, in_place=True)
        except ValueError:
            raise PsiError(f"party {self.name!r}: {peer!r} sent a point that is not a valid curve point") from None

    def _check_shapes(self, peer: str, peer_shape: str, a: str, b: str, check: bool) -> None:
        mine = self._prepare().shape
        if check and peer_shape != mine:
            shapes = {self.name: mine, peer: peer_shape}
            raise PsiError(
                f"party {self.name!r}: customer id formats differ between {a!r} and {b!r}: {a!r} ids look "
                f"like {shapes[a]!r}, {b!r} ids look like {shapes[b]!r}; normalise the id column at both "
                f"parties (or run with check_format=False)")

    def _mode(self, request: Message) -> str:
        mode = str(request.meta.get("mode", ""))
        if mode not in MODES:
            raise PsiError(f"party {self.name!r}: unknown PSI mode {mode!r}; expected one of {list(MODES)}")
        return mode

    def _check_map(self, peer: str, theirs: Any) -> None:
        """Both parties must hash ids to the curve the same way, or every id silently fails to match."""
        if theirs != HASH_TO_CURVE:
            raise PsiError(f"party {self.name!r}: {peer!r} hashes ids to the curve with {theirs!r}, this party with "
                           f"{HASH_TO_CURVE!r}; run the same Sampan PSI version at both parties")

    def _no_overlap(self, a: str, b: str) -> PsiError:
        return PsiError(f"party {self.name!r}: no common customers between {a!r} and {b!r}")

    # handlers (A: label holder, B: partner)
    def _offer(self, request: Message) -> Message:
        """A, step 1: announce mode, size and id shape; nothing is blinded before B compares formats."""
        peer, mode = str(request.meta["peer"]), self._mode(request)
        self._channels().require_role(self.name, "label_holder", "to play the label holder's side of PSI")
        prepared = self._prepare()
        self._sessions[peer] = _Session(mode=mode, role="a", key=None)
        self._inbox.pop(peer, None)
        self._outbox.pop(peer, None)
        envelope = self._seal(request, peer, "psi.offer",
                              meta={"mode": mode, "n": len(prepared), "shape": prepared.shape,
                                    "hash_to_curve": HASH_TO_CURVE})
        return request.reply("psi.offer", {"envelope": envelope}, {"n": len(prepared)})

    def _accept(self, request: Message) -> Message:
        """B, step 2: check formats, then send own shuffled H(b)^beta."""
        peer, mode = str(request.meta["peer"]), self._mode(request)
        self._channels().require_role(peer, "label_holder", "PSI")
        inner = self._open(request, peer, "psi.offer")
        self._inbox.pop(peer, None)
        self._outbox.pop(peer, None)
        if inner.meta.get("mode") != mode:
            raise PsiError(f"party {self.name!r}: {peer!r} runs PSI mode {inner.meta.get('mode')!r}, "
                           f"the coordinator asked for {mode!r}")
        self._check_map(peer, inner.meta.get("hash_to_curve"))
        prepared = self._prepare()
        encoded, shape = prepared.ids, prepared.shape
        self._check_shapes(peer, str(inner.meta.get("shape")), peer, self.name,
                           bool(request.meta.get("check_format", True)))
        session = _Session(mode=mode, role="b", key=_new_scalar(), peer_n=int(inner.meta["n"]))
        assert session.key is not None
        self.peer_sizes[peer] = session.peer_n
        session.perm = _secure_permutation(len(encoded))
        mine = _hash_and_blind(encoded[session.perm], session.key, self.workers)[0]  # hashed in sent order
        self._sessions[peer] = session
        return self._send(request, peer, "psi.accept", {"points": mine},
                          {"n": len(encoded), "shape": shape, "hash_to_curve": HASH_TO_CURVE},
                          {"n": len(encoded)})

    def _blind(self, request: Message) -> Message:
        """A, step 3: send own shuffled H(a)^alpha; raise B's points to alpha (sent to B in mode both)."""
        peer = str(request.meta["peer"])
        session = self._session(peer, "a")
        inner = self._receive(request, peer, "psi.accept")
        self._check_map(peer, inner.meta.get("hash_to_curve"))
        self._check_shapes(peer, str(inner.meta.get("shape")), self.name, peer,
                           bool(request.meta.get("check_format", True)))
        session.peer_n = int(inner.meta["n"])
        self.peer_sizes[peer] = session.peer_n
        theirs = self._peer_points(inner, "points", session.peer_n, peer)
        encoded = self._prepare().ids
        key = _new_scalar()
        session.perm = _secure_permutation(len(encoded))
        try:
            mine, session.doubled_peer = _hash_and_blind(encoded[session.perm], key, self.workers, theirs,
                                                         in_place=True)
        except (ValueError, ParallelError) as exc:
            raise PsiError(f"party {self.name!r}: blinding failed ({exc}); {peer!r} may have sent a point "
                           f"that is not on the curve") from None
        del key  # alpha is not needed again: both multiplications are done
        arrays = {"points": mine}
        if session.mode == "both":
            arrays["peer_points"] = session.doubled_peer
        return self._send(request, peer, "psi.blind", arrays, {"n": len(encoded)})

    def _respond(self, request: Message) -> Message:
        """B, step 4: raise A's points to beta and return them (reshuffled in mode cardinality)."""
        peer = str(request.meta["peer"])
        session = self._session(peer, "b")
        inner = self._receive(request, peer, "psi.blind")
        assert session.key is not None and session.perm is not None
        theirs = self._peer_points(inner, "points", session.peer_n, peer)
        doubled = self._blind_peer(theirs, session.key, peer)
        session.key = None
        if session.mode == "both":
            mine = self._peer_points(inner, "peer_points", len(session.perm), peer)
            ix, iy = match_tokens(doubled, mine)
            if len(ix) == 0:
                del self._sessions[peer]
                raise self._no_overlap(peer, self.name)
            self.rows[peer] = session.perm[iy]
            self._tokens[peer] = doubled[ix]
            self.cardinality[peer] = len(ix)
        elif session.mode == "cardinality":
            doubled = doubled[_secure_permutation(len(doubled))]
        del self._sessions[peer]
        return self._send(request, peer, "psi.respond", {"points": doubled}, {})

    def _finish(self, request: Message) -> Message:
        """A, step 5: match; report the cardinality to the coordinator only in mode both."""
        peer = str(request.meta["peer"])
        session = self._session(peer, "a")
        inner = self._receive(request, peer, "psi.respond")
        assert session.perm is not None and session.doubled_peer is not None
        doubled = self._peer_points(inner, "points", len(session.perm), peer)
        del self._sessions[peer]
        ix, _ = match_tokens(doubled, session.doubled_peer)
        self.cardinality[peer] = len(ix)
        if session.mode == "cardinality":
            self.rows.pop(peer, None)
            return request.reply("psi.finish")
        if len(ix) == 0:
            raise self._no_overlap(self.name, peer)
        self.rows[peer] = session.perm[ix]
        self._tokens[peer] = doubled[ix]
        meta = {"cardinality": len(ix)} if session.mode == "both" else {}
        return request.reply("psi.finish", meta=meta)

    def _align(self, request: Message) -> Message:
        """Label holder: keep the customers every partner has, in a random order; each partner's tokens then leave
        in sealed parts (`psi.pull`), so no message carries more than one part's points (R15-PSI-4)."""
        partners = [str(p) for p in request.meta["partners"]]
        n = len(self._prepare())
        common = np.ones(n, dtype=bool)
        for p in partners:
            if p not in self.rows or p not in self._tokens:
                raise PsiError(f"party {self.name!r}: no mode-'both' PSI result with {p!r} to align on")
            present = np.zeros(n, dtype=bool)
            present[self.rows[p]] = True
            common &= present
        rows = np.flatnonzero(common)
        if len(rows) == 0:
            raise PsiError(f"party {self.name!r}: no customer is common to all of "
                           f"{', '.join(repr(x) for x in [self.name, *partners])}")
        rows = rows[_secure_permutation(len(rows))]
        parts = count_parts({"rows": rows}, self.part_rows)
        for p in partners:  # each partner's tokens wait in its outbox; the coordinator pulls them part by part
            position = np.full(n, -1, dtype=np.int64)
            position[self.rows[p]] = np.arange(len(self.rows[p]))
            self._outbox[p] = Outbox("psi.align", {"tokens": self._tokens[p][position[rows]]}, {}, self.part_rows,
                                     parts, next=0)
        self.aligned_rows = rows
        return request.reply("psi.align", meta={"n_aligned": len(rows), "parts": parts})

    def _aligned(self, request: Message) -> Message:
        """Partner: map the label holder's token order onto own rows."""
        holder = self._channels().require_role(str(request.meta["label_holder"]), "label_holder", "psi.aligned")
        if holder not in self._tokens:
            raise PsiError(f"party {self.name!r}: no mode-'both' PSI result with {holder!r} to align on")
        inner = self._receive(request, holder, "psi.align")  # earlier parts came as psi.part
        tokens = self._peer_points(inner, "tokens", None, holder)
        ix, iy = match_tokens(tokens, self._tokens[holder])
        if len(ix) != len(tokens):
            log.warning("party %s: %d aligned customers from %s are not in its intersection (local log only)",
                        self.name, len(tokens) - len(ix), holder)
            raise PsiError(f"party {self.name!r}: aligned customers from {holder!r} are not in its intersection "
                           "(count in this party's local log)")
        where = np.empty(len(tokens), dtype=np.int64)
        where[ix] = iy
        self.aligned_rows = self.rows[holder][where]
        return request.reply("psi.aligned", meta={"n_aligned": len(tokens)})

