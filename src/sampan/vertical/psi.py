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
as (n, 32) uint8 arrays, in sealed parts of at most 2^18 points (``psi.part`` / ``psi.pull``, see
`sampan.vertical.psi_parts`) when a payload is larger: at most 8 MiB of points per array per message. Star
alignment's aligned tokens travel the same way, per partner: ``psi.align`` answers only counts, the coordinator
pulls each partner's tokens from the label holder part by part (``psi.pull``) and passes them on (``psi.part``,
the last with ``psi.aligned``), so no message carries more than one part's points (review R15-PSI-4).
Both parties order the intersection by the doubly blinded token (a canonical
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
of it (a payload's parts carry their index, count and a random payload tag inside the seal, so parts
dropped, repeated, reordered or spliced from another payload abort the step), the rest aborts or
corrupts the alignment (availability and integrity, not privacy): none reveals an id.
Security rests on DDH in Curve25519's prime-order subgroup (clamped scalars are multiples of the
cofactor 8, so every blinded point lies in that subgroup) and on SHA-512 as a random oracle.
Hash to curve (v2) is Elligator 2 on r = SHA-512(domain || NFC id) mod 2^255 - 19 (`sampan.vertical.psi_points`
has the construction and why it is not the cheaper u = H(id)): every point is on the curve, not its twist (a
twist point stays on the twist when blinded, so its token would tell the peer one public bit of a hash of its
id). The offer and accept name the map, and parties on different maps refuse each other rather than match
nothing. The map is not constant time (Python big integers): a timing side channel only to someone measuring
the party's own machine, not across the network (it runs before any message, in batches).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sampan.vertical.psi_points import POINT_BYTES, PsiError, blind, hash_to_curve, match_tokens  # noqa: F401  (PSI's API)
from sampan.wire import Message

# The party's side: `sampan.vertical.psi_party.PsiParty`; id normalisation: `sampan.vertical.psi_ids`.
__all__ = [
    "MODES", "MODE_REVEALS", "ALIGNMENT_REVEALS", "PsiError", "PsiOutcome",
    "AlignmentOutcome", "run_psi", "align", "hash_to_curve", "blind", "match_tokens",
]

MODES: tuple[str, ...] = ("both", "label_holder", "cardinality")
MAX_PARTS = 1 << 16  # parts per payload the coordinator relays (2^16 x 2^18 points: far above any bank)

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
        "size. The coordinator relays sealed envelopes and learns only the two set sizes. 'Not which' holds "
        "only while the label holder follows the protocol: the partner's reshuffle hides the matching positions "
        "from a label holder that blinds all its ids with one key, but one that blinds each id with its own key "
        "(the partner cannot tell) learns which of its ids the partner holds (review R14-CHECKS-6; no "
        "malicious-security variant yet)."
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

    def ask(to: str, kind: str, peer: str, envelope: np.ndarray | None = None, **extra: Any) -> Message:
        arrays = {} if envelope is None else {"envelope": envelope}
        return _ask(transport, Message(run_id, step, me, to, kind, arrays, {**meta, "peer": peer, **extra}))

    def relay(reply: Message, sender: str, receiver: str, kind: str) -> Message:
        """Pass `sender`'s payload on to `receiver` as step `kind`, one sealed part at a time (bounded messages):
        every part but the last as ``psi.part``, pulled from the sender just before it is passed on."""
        parts = reply.meta.get("parts", 1)
        if not isinstance(parts, int) or not 1 <= parts <= MAX_PARTS:
            raise PsiError(f"party {sender!r} announced {parts!r} parts for {reply.kind!r}")
        envelope = reply.arrays["envelope"]
        for k in range(1, parts):
            ask(receiver, "psi.part", sender, envelope)
            envelope = ask(sender, "psi.pull", receiver, part=k).arrays["envelope"]
        return ask(receiver, kind, sender, envelope)

    offer = ask(a, "psi.offer", b)
    accept = ask(b, "psi.accept", a, offer.arrays["envelope"])
    blinded = relay(accept, b, a, "psi.blind")
    respond = relay(blinded, a, b, "psi.respond")
    finish = relay(respond, b, a, "psi.finish")
    cardinality = finish.meta.get("cardinality") if mode == "both" else None
    return PsiOutcome(mode=mode, parties=(a, b),
                      sizes={a: int(offer.meta["n"]), b: int(accept.meta["n"])},
                      cardinality=None if cardinality is None else int(cardinality),
                      reveals=MODE_REVEALS[mode], seconds=time.perf_counter() - started)


def align(transport: _Exchanger, run_id: str, label_holder: str, partners: list[str], *, step: int = 0,
          check_format: bool = True, backend: str = "ecdh") -> AlignmentOutcome:
    """Star alignment: afterwards every party's `aligned_rows` has one length and row i is one customer."""
    partners = list(dict.fromkeys(partners))
    if not partners or label_holder in partners:
        raise ValueError("align needs at least one partner, all different from the label holder")
    started = time.perf_counter()
    pair = run_psi
    if backend == "rr22":  # opt-in RR22 through spu (`psi_rr22`): same results, same places, its own statement
        from sampan.vertical.psi_rr22 import run_rr22 as pair
    elif backend != "ecdh":
        raise ValueError(f"unknown PSI backend {backend!r}; expected 'ecdh' or 'rr22'")
    pairwise = [pair(transport, run_id, label_holder, p, "both", step, check_format=check_format)
                for p in partners]
    me = _coordinator(transport)
    holder = _ask(transport, Message(run_id, step, me, label_holder, "psi.align", meta={"partners": partners}))
    n_aligned, parts = int(holder.meta["n_aligned"]), holder.meta.get("parts")
    if not isinstance(parts, int) or not 1 <= parts <= MAX_PARTS:
        raise PsiError(f"party {label_holder!r} announced {parts!r} parts for 'psi.align'")
    last: dict[str, np.ndarray] = {}
    for p in partners:  # each partner's aligned tokens, pulled and passed on one sealed part at a time
        for k in range(parts):
            pulled = _ask(transport, Message(run_id, step, me, label_holder, "psi.pull", meta={"peer": p, "part": k}))
            if k < parts - 1:
                _ask(transport, Message(run_id, step, me, p, "psi.part", {"envelope": pulled.arrays["envelope"]},
                                        {"peer": label_holder}))
        last[p] = pulled.arrays["envelope"]
    requests = (Message(run_id, step, me, p, "psi.aligned", {"envelope": last[p]}, {"label_holder": label_holder})
                for p in partners)
    for reply in transport.exchange(requests):
        if int(reply.meta.get("n_aligned", -1)) != n_aligned:
            raise PsiError(f"party {reply.sender!r} aligned {reply.meta.get('n_aligned')} customers, "
                           f"{label_holder!r} aligned {n_aligned}")
    sizes = {label_holder: pairwise[0].sizes[label_holder], **{o.parties[1]: o.sizes[o.parties[1]] for o in pairwise}}
    return AlignmentOutcome(
        label_holder=label_holder, partners=tuple(partners), n_aligned=n_aligned, sizes=sizes,
        cardinalities={o.parties[1]: int(o.cardinality or 0) for o in pairwise},
        reveals=ALIGNMENT_REVEALS if backend == "ecdh" else f"{ALIGNMENT_REVEALS} {pairwise[0].reveals}",
        seconds=time.perf_counter() - started, pairwise=pairwise)
