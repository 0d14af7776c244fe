"""Entity alignment by private set intersection (ECDH-PSI on Curve25519).

Why: vertical federated learning needs every party's rows for the same customers in the same order,
but no bank may tell another which customers it has outside the common set. Each party maps its ids
to curve points (hash to curve) and blinds them with a fresh secret scalar; blinding commutes
(x25519(a, x25519(b, P)) == x25519(b, x25519(a, P))), so doubly blinded points of the same id are
equal, while a singly blinded point is unlinkable to its id without the scalar.

Protocol, for label holder A (ids a_i, scalar alpha) and partner B (ids b_j, scalar beta):

1. ``psi.offer``   A -> B: mode, |A|, A's id shape (format fingerprint, below). No blinding yet.
2. ``psi.accept``  B checks the shapes agree, then B -> A: shuffled H(b_j)^beta.
3. ``psi.blind``   A -> B: shuffled H(a_i)^alpha; in mode "both" also H(b_j)^(beta alpha) in B's order.
4. ``psi.respond`` B -> A: H(a_i)^(alpha beta), in A's order (modes both, label_holder) or reshuffled
   by B (mode cardinality). In mode "both" B matches here and learns its intersecting rows.
5. ``psi.finish``  A matches and learns its intersecting rows, or only their number.

Every party-to-party payload is a `SealedChannels` envelope relayed by the coordinator; points travel
as (n, 32) uint8 arrays. Both parties order the intersection by the doubly blinded token (a canonical
order that carries no information about either party's files), so row i of A's ``rows`` and row i of
B's ``rows`` are the same customer. Each scalar is used for one session and dropped afterwards.

What each role learns, per mode (|X| = set size, I = the intersection):

* ``both``: A learns |B| and which of its rows are in I; B learns |A| and which of its rows are in I.
  The coordinator learns |A|, |B| (envelope sizes) and |I| (A reports it, alignment needs it).
* ``label_holder``: A learns |B| and which of its rows are in I; B learns only |A|. The coordinator
  learns |A| and |B|.
* ``cardinality``: A learns |B| and |I| only (B shuffles A's doubly blinded points, so A cannot tell
  which of its ids matched); B learns only |A|. The coordinator learns |A| and |B|.

In every mode both parties learn each other's dominant id shape (e.g. ``AA99999999``), and a failure
is reported to the coordinator as an error naming the parties (never an id): an empty intersection
aborts modes both and label_holder, so then B and the coordinator learn that I is empty; mismatched
shapes abort every mode and the error names both shapes. `align` (star topology) reveals more; see
`ALIGNMENT_REVEALS`.

Threat model: semi-honest parties that follow the protocol; a coordinator that does not collude with
a party (it sees only sizes, timing and errors) and may tamper with what it relays. Every PSI payload
travels inside a `SealedChannels` envelope (AEAD bound to the run, sender and recipient) under keys each
party derived only from peer keys signed by the peer's certificate (`VerticalParty.peers`,
`sampan.crypto.identity`). A coordinator that substituted run keys could otherwise play each party's
peer — send its own blinded guesses H(x)^gamma and learn which guessed ids a party holds — so PSI
must never run on channels made from unauthenticated keys. What tampering is left: dropping, delaying
or replaying an authentic envelope within the run; the expected-kind and session checks refuse most
of it, the rest aborts or corrupts the alignment (availability and integrity, not privacy): none
reveals an id.
Security rests on DDH in Curve25519's prime-order subgroup (clamped scalars are multiples of the
cofactor 8, so every blinded point lies in that subgroup) and on SHA-512 as a random oracle.
Hash to curve is try-and-increment: u = SHA-512(domain || counter || NFC id)[:32] with the top bit
cleared, accepted when u^3 + 486662 u^2 + u is a nonzero square mod 2^255 - 19, so every point is on
the curve, not its twist (a twist point would leak its id's residue class through the blinded value).
Try-and-increment is not constant time: the number of tries depends on the id, a timing side channel
only to someone measuring the party's own machine, not across the network (tries happen before any
message and are batched).
"""

from __future__ import annotations

import logging
import os
import string
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sampan.vertical._parallel import ParallelError
from sampan.crypto.channel import SealedChannels
from sampan.vertical.psi_points import (  # noqa: F401  (re-exported: PSI's public API and tests)
    _DOMAIN, POINT_BYTES, PsiError, _check_points, _hash_and_blind, _points, blind, hash_to_curve, match_tokens,
)
from sampan.wire import Message

__all__ = [
    "MODES", "MODE_REVEALS", "ALIGNMENT_REVEALS", "PsiError", "PsiParty", "PsiOutcome",
    "AlignmentOutcome", "run_psi", "align", "id_shape", "hash_to_curve", "blind", "match_tokens",
]

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("both", "label_holder", "cardinality")

MODE_REVEALS: dict[str, str] = {
    "both": (
        "Private set intersection, mode 'both' (ECDH on Curve25519, semi-honest parties, non-colluding "
        "coordinator). The label holder learns the partner's set size and which of its own customers are in "
        "the intersection; the partner learns the label holder's set size and which of its own customers are "
        "in the intersection; both hold the intersection in one agreed order. The coordinator relays sealed "
        "envelopes and learns both set sizes and the size of the intersection, nothing about any customer. "
        "No party learns anything about the other's customers outside the intersection."
    ),
    "label_holder": (
        "Private set intersection, mode 'label_holder' (ECDH on Curve25519, semi-honest parties, "
        "non-colluding coordinator). Only the label holder learns which of its customers are in the "
        "intersection (and the partner's set size); the partner learns only the label holder's set size. "
        "The coordinator relays sealed envelopes and learns only the two set sizes. An empty intersection "
        "aborts the run, which tells the partner and the coordinator that it is empty."
    ),
    "cardinality": (
        "Private set intersection, mode 'cardinality' (ECDH on Curve25519, semi-honest parties, "
        "non-colluding coordinator). The label holder learns only how many customers the two parties have in "
        "common (and the partner's set size), not which; the partner learns only the label holder's set "
        "size. The coordinator relays sealed envelopes and learns only the two set sizes."
    ),
}

ALIGNMENT_REVEALS = (
    "Entity alignment by star PSI: the label holder runs mode-'both' PSI with each partner, then picks the "
    "customers present at every party, in an order it draws at random. Each partner learns its pairwise "
    "intersection with the label holder and which of those customers are common to all parties; the label "
    "holder learns which of its customers each partner has; partners learn nothing about each other's "
    "customers beyond the common set. Every party learns the other parties' set sizes where it runs PSI "
    "with them. The coordinator relays sealed envelopes and learns the set sizes, each pairwise "
    "intersection size and the number of aligned customers, nothing about any customer."
)


def _new_scalar() -> X25519PrivateKey:
    """A fresh per-session secret (32 bytes of OS randomness); lives only in this object."""
    return X25519PrivateKey.from_private_bytes(os.urandom(32))


def _secure_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation from the OS CSPRNG (sort 64-bit random keys)."""
    return np.argsort(np.frombuffer(os.urandom(8 * n), dtype=np.uint64), kind="stable")


# --- ids ------------------------------------------------------------------------------------------

_ASCII_SHAPE = bytes(
    ord("9") if chr(c) in string.digits else ord("A") if chr(c) in string.ascii_letters
    else c if 32 <= c < 127 else ord("?") for c in range(256))


def _shape_of(idb: bytes, text: str) -> bytes:
    if idb.isascii():
        return idb.translate(_ASCII_SHAPE)
    return "".join("9" if c.isdigit() else "A" if c.isalpha() else c if " " <= c < "\x7f" else "?"
                   for c in text).encode()


def id_shape(ids: Sequence[str], encoded: Sequence[bytes] | None = None) -> str:
    """The dominant character-class shape of normalised ids: digit -> 9, letter -> A, ASCII punctuation kept.

    Coarse on purpose: it tells "BR00001234" from "00001234" or "0000-1234" without describing any one
    customer. A shape without a letter or digit (an id made only of punctuation) is masked.
    """
    if not ids:
        return ""
    encoded = [s.encode() for s in ids] if encoded is None else encoded
    shape, _ = Counter([_shape_of(b, s) for b, s in zip(encoded, ids)]).most_common(1)[0]
    text = shape.decode()
    if "A" not in text and "9" not in text:
        text = "?" * len(text)
    return text if len(text) <= 64 else f"{text[:64]}...({len(text)} chars)"


def _normalise(ids: Any, party: str) -> tuple[list[str], list[bytes]]:
    """NFC + strip, then validate: strings, non-empty, encodable, unique.

    The error text reaches the coordinator: it names the check that failed, never counts, row numbers or
    values (those go to this party's local log only)."""
    arr = np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        raise PsiError(f"party {party!r}: ids must be a 1-D array, got shape {arr.shape}")
    raw = arr.tolist()
    if not raw:
        raise PsiError(f"party {party!r}: has no customer ids to match")
    nfc = unicodedata.normalize
    try:
        norm = [nfc("NFC", s).strip() for s in raw]
    except TypeError:
        row = next(i for i, s in enumerate(raw) if not isinstance(s, str))
        log.warning("party %s: id at row %d is a %s, not a string (local log only)", party, row,
                    type(raw[row]).__name__)
        raise PsiError(f"party {party!r}: an id is not a string (row in this party's local log)") from None
    if not all(norm):
        blank = [i for i, s in enumerate(norm) if not s]
        log.warning("party %s: %d empty ids, first at row %d (local log only)", party, len(blank), blank[0])
        raise PsiError(f"party {party!r}: empty customer ids (rows in this party's local log)")
    try:
        encoded = [s.encode() for s in norm]
    except UnicodeEncodeError:
        row = next(i for i, s in enumerate(norm) if not _encodable(s))
        log.warning("party %s: id at row %d is not valid Unicode (local log only)", party, row)
        raise PsiError(f"party {party!r}: an id is not valid Unicode (lone surrogate; row in this party's local "
                       "log)") from None
    if len(set(encoded)) != len(encoded):
        seen: set[bytes] = set()
        repeats = [i for i, b in enumerate(encoded) if b in seen or seen.add(b)]  # type: ignore[func-returns-value]
        log.warning("party %s: %d duplicate customer ids after normalisation, first repeat at row %d (local log "
                    "only)", party, len(repeats), repeats[0])
        raise PsiError(f"party {party!r}: duplicate customer ids after normalisation (rows in this party's local "
                       "log); PSI needs unique ids")
    return norm, encoded


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# --- party side -----------------------------------------------------------------------------------

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

    def __init__(self, name: str, ids: Any, *, workers: int | None = None) -> None:
        self.name = name
        self.ids = np.asarray(ids, dtype=object)
        self.workers = workers
        self.channels: SealedChannels | None = None
        self.rows: dict[str, np.ndarray] = {}
        self.cardinality: dict[str, int] = {}
        self.peer_sizes: dict[str, int] = {}
        self.aligned_rows: np.ndarray | None = None
        self._tokens: dict[str, np.ndarray] = {}  # peer -> doubly blinded tokens, aligned with rows[peer]
        self._sessions: dict[str, _Session] = {}
        self._prepared: tuple[list[str], list[bytes], str] | None = None

    def register(self, app: _Registry) -> "PsiParty":
        for kind, handler in (("psi.offer", self._offer), ("psi.accept", self._accept),
                              ("psi.blind", self._blind), ("psi.respond", self._respond),
                              ("psi.finish", self._finish), ("psi.align", self._align),
                              ("psi.aligned", self._aligned)):
            app.register(kind, handler)
        return self

    # helpers
    def _prepare(self) -> tuple[list[str], list[bytes], str]:
        if self._prepared is None:
            norm, encoded = _normalise(self.ids, self.name)
            self._prepared = (norm, encoded, id_shape(norm, encoded))
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
            return blind(points, key, workers=self.workers)
        except ValueError:
            raise PsiError(f"party {self.name!r}: {peer!r} sent a point that is not a valid curve point") from None

    def _check_shapes(self, peer: str, peer_shape: str, a: str, b: str, check: bool) -> None:
        mine = self._prepare()[2]
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

    def _no_overlap(self, a: str, b: str) -> PsiError:
        return PsiError(f"party {self.name!r}: no common customers between {a!r} and {b!r}")

    # handlers (A: label holder, B: partner)
    def _offer(self, request: Message) -> Message:
        """A, step 1: announce mode, size and id shape; nothing is blinded before B compares formats."""
        peer, mode = str(request.meta["peer"]), self._mode(request)
        self._channels().require_role(self.name, "label_holder", "to play the label holder's side of PSI")
        _, encoded, shape = self._prepare()
        self._sessions[peer] = _Session(mode=mode, role="a", key=None)
        envelope = self._seal(request, peer, "psi.offer", meta={"mode": mode, "n": len(encoded), "shape": shape})
        return request.reply("psi.offer", {"envelope": envelope}, {"n": len(encoded)})

    def _accept(self, request: Message) -> Message:
        """B, step 2: check formats, then send own shuffled H(b)^beta."""
        peer, mode = str(request.meta["peer"]), self._mode(request)
        self._channels().require_role(peer, "label_holder", "PSI")
        inner = self._open(request, peer, "psi.offer")
        if inner.meta.get("mode") != mode:
            raise PsiError(f"party {self.name!r}: {peer!r} runs PSI mode {inner.meta.get('mode')!r}, "
                           f"the coordinator asked for {mode!r}")
        _, encoded, shape = self._prepare()
        self._check_shapes(peer, str(inner.meta.get("shape")), peer, self.name,
                           bool(request.meta.get("check_format", True)))
        session = _Session(mode=mode, role="b", key=_new_scalar(), peer_n=int(inner.meta["n"]))
        assert session.key is not None
        self.peer_sizes[peer] = session.peer_n
        session.perm = _secure_permutation(len(encoded))
        mine = _hash_and_blind(encoded, session.key, self.workers)[0][session.perm]
        self._sessions[peer] = session
        envelope = self._seal(request, peer, "psi.accept", {"points": mine}, {"n": len(encoded), "shape": shape})
        return request.reply("psi.accept", {"envelope": envelope}, {"n": len(encoded)})

    def _blind(self, request: Message) -> Message:
        """A, step 3: send own shuffled H(a)^alpha; raise B's points to alpha (sent to B in mode both)."""
        peer = str(request.meta["peer"])
        session = self._session(peer, "a")
        inner = self._open(request, peer, "psi.accept")
        self._check_shapes(peer, str(inner.meta.get("shape")), self.name, peer,
                           bool(request.meta.get("check_format", True)))
        session.peer_n = int(inner.meta["n"])
        self.peer_sizes[peer] = session.peer_n
        theirs = self._peer_points(inner, "points", session.peer_n, peer)
        _, encoded, _ = self._prepare()
        key = _new_scalar()
        session.perm = _secure_permutation(len(encoded))
        try:
            mine, session.doubled_peer = _hash_and_blind(encoded, key, self.workers, theirs)
        except (ValueError, ParallelError) as exc:
            raise PsiError(f"party {self.name!r}: blinding failed ({exc}); {peer!r} may have sent a point "
                           f"that is not on the curve") from None
        del key  # alpha is not needed again: both multiplications are done
        mine = mine[session.perm]
        arrays = {"points": mine}
        if session.mode == "both":
            arrays["peer_points"] = session.doubled_peer
        envelope = self._seal(request, peer, "psi.blind", arrays, {"n": len(encoded)})
        return request.reply("psi.blind", {"envelope": envelope})

    def _respond(self, request: Message) -> Message:
        """B, step 4: raise A's points to beta and return them (reshuffled in mode cardinality)."""
        peer = str(request.meta["peer"])
        session = self._session(peer, "b")
        inner = self._open(request, peer, "psi.blind")
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
        envelope = self._seal(request, peer, "psi.respond", {"points": doubled})
        return request.reply("psi.respond", {"envelope": envelope})

    def _finish(self, request: Message) -> Message:
        """A, step 5: match; report the cardinality to the coordinator only in mode both."""
        peer = str(request.meta["peer"])
        session = self._session(peer, "a")
        inner = self._open(request, peer, "psi.respond")
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
        """Label holder: keep the customers every partner has, in a random order; tell each partner its tokens."""
        partners = [str(p) for p in request.meta["partners"]]
        n = len(self._prepare()[0])
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
        arrays: dict[str, np.ndarray] = {}
        for k, p in enumerate(partners):
            position = np.full(n, -1, dtype=np.int64)
            position[self.rows[p]] = np.arange(len(self.rows[p]))
            arrays[f"envelope{k}"] = self._seal(request, p, "psi.align", {"tokens": self._tokens[p][position[rows]]})
        self.aligned_rows = rows
        return request.reply("psi.align", arrays, {"n_aligned": len(rows)})

    def _aligned(self, request: Message) -> Message:
        """Partner: map the label holder's token order onto own rows."""
        holder = self._channels().require_role(str(request.meta["label_holder"]), "label_holder", "psi.aligned")
        inner = self._open(request, holder, "psi.align")
        tokens = self._peer_points(inner, "tokens", None, holder)
        if holder not in self._tokens:
            raise PsiError(f"party {self.name!r}: no mode-'both' PSI result with {holder!r} to align on")
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


# --- coordinator side -----------------------------------------------------------------------------

class _Exchanger(Protocol):
    """The one Transport method the coordinator side uses (kept structural: vertical does not import transport)."""

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]: ...


@dataclass(frozen=True)
class PsiOutcome:
    """What the coordinator knows after a PSI run: sizes, and the cardinality only in mode both."""

    mode: str
    parties: tuple[str, str]  # (label holder, partner)
    sizes: dict[str, int]
    cardinality: int | None
    reveals: str
    seconds: float


@dataclass(frozen=True)
class AlignmentOutcome:
    """What the coordinator knows after star alignment."""

    label_holder: str
    partners: tuple[str, ...]
    n_aligned: int
    sizes: dict[str, int]
    cardinalities: dict[str, int]  # partner -> |label holder ∩ partner|
    reveals: str
    seconds: float
    pairwise: list[PsiOutcome] = field(default_factory=list)


def _ask(transport: _Exchanger, message: Message) -> Message:
    replies = list(transport.exchange([message]))
    if len(replies) != 1:
        raise PsiError(f"expected one reply from {message.recipient!r} to {message.kind!r}, got {len(replies)}")
    reply = replies[0]
    if reply.kind != message.kind:
        raise PsiError(f"party {message.recipient!r} answered {message.kind!r} with {reply.kind!r}")
    return reply


def _coordinator(transport: Any) -> str:
    return str(getattr(transport, "coordinator", "coordinator"))


def run_psi(transport: _Exchanger, run_id: str, a: str, b: str, mode: str = "both", step: int = 0, *,
            check_format: bool = True) -> PsiOutcome:
    """PSI between label holder `a` and partner `b`; results stay at the parties (`PsiParty.rows` etc.).

    Raises the transport's PartyError when a party fails (duplicates, empty set, format mismatch, no
    overlap); the error names the parties and never an id.
    """
    if mode not in MODES:
        raise ValueError(f"unknown PSI mode {mode!r}; expected one of {list(MODES)}")
    if a == b:
        raise ValueError("PSI needs two different parties")
    started = time.perf_counter()
    me = _coordinator(transport)
    meta: dict[str, Any] = {"mode": mode, "check_format": bool(check_format)}

    def ask(to: str, kind: str, peer: str, envelope: np.ndarray | None = None) -> Message:
        arrays = {} if envelope is None else {"envelope": envelope}
        return _ask(transport, Message(run_id, step, me, to, kind, arrays, {**meta, "peer": peer}))

    offer = ask(a, "psi.offer", b)
    accept = ask(b, "psi.accept", a, offer.arrays["envelope"])
    blinded = ask(a, "psi.blind", b, accept.arrays["envelope"])
    respond = ask(b, "psi.respond", a, blinded.arrays["envelope"])
    finish = ask(a, "psi.finish", b, respond.arrays["envelope"])
    cardinality = finish.meta.get("cardinality") if mode == "both" else None
    return PsiOutcome(mode=mode, parties=(a, b),
                      sizes={a: int(offer.meta["n"]), b: int(accept.meta["n"])},
                      cardinality=None if cardinality is None else int(cardinality),
                      reveals=MODE_REVEALS[mode], seconds=time.perf_counter() - started)


def align(transport: _Exchanger, run_id: str, label_holder: str, partners: list[str], *, step: int = 0,
          check_format: bool = True) -> AlignmentOutcome:
    """Star alignment: afterwards every party's `aligned_rows` has one length and row i is one customer."""
    partners = list(dict.fromkeys(partners))
    if not partners or label_holder in partners:
        raise ValueError("align needs at least one partner, all different from the label holder")
    started = time.perf_counter()
    pairwise = [run_psi(transport, run_id, label_holder, p, "both", step, check_format=check_format)
                for p in partners]
    me = _coordinator(transport)
    holder = _ask(transport, Message(run_id, step, me, label_holder, "psi.align", meta={"partners": partners}))
    n_aligned = int(holder.meta["n_aligned"])
    requests = (Message(run_id, step, me, p, "psi.aligned", {"envelope": holder.arrays[f"envelope{k}"]},
                        {"label_holder": label_holder}) for k, p in enumerate(partners))
    for reply in transport.exchange(requests):
        if int(reply.meta.get("n_aligned", -1)) != n_aligned:
            raise PsiError(f"party {reply.sender!r} aligned {reply.meta.get('n_aligned')} customers, "
                           f"{label_holder!r} aligned {n_aligned}")
    sizes = {label_holder: pairwise[0].sizes[label_holder], **{o.parties[1]: o.sizes[o.parties[1]] for o in pairwise}}
    return AlignmentOutcome(
        label_holder=label_holder, partners=tuple(partners), n_aligned=n_aligned, sizes=sizes,
        cardinalities={o.parties[1]: int(o.cardinality or 0) for o in pairwise},
        reveals=ALIGNMENT_REVEALS, seconds=time.perf_counter() - started, pairwise=pairwise)
