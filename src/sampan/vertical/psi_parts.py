"""PSI payloads in bounded parts: a sender's outbox sealed part by part, a receiver's inbox filled in place.

Why: at a bank's size one PSI step carries 10M points (320 MB; 640 MB in the label holder's step of mode
"both"), above a deployed link's default message cap (256 MB) and, sealed whole, held three or four times
over while being encoded and encrypted. Here each step's arrays go out as parts of at most `PART_ROWS` rows
(8 MiB of points), each part its own sealed envelope, and the receiver writes each part straight into one
preallocated array. Only the sender's arrays and the receiver's result are ever whole.

Order and completeness are checked inside the seal, never taken from the coordinator: every part's sealed
meta names its step, its index and the count of parts, and the receiver takes index k only right after k - 1,
and every part carries its payload's random tag, so a coordinator that drops, repeats or reorders parts, or
splices in parts of another payload, makes the step fail; it never mixes two payloads. (Replaying a whole
earlier payload of the same run is what `sampan.vertical.psi`'s threat model already allows: it corrupts or
aborts the alignment and reveals no id.)

What a first part may declare is checked before anything is allocated (review R15-PSI-3): the receiver passes
the row totals the protocol already fixed (the offer's size, its own set's size, its intersection), and a part
naming other arrays or other totals is refused with an error naming both parties, so a peer cannot make it
reserve memory beyond the sizes it agreed to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.vertical.psi_points import POINT_BYTES, PsiError
from sampan.wire import Message

__all__ = ["PART_ROWS", "MAX_ROWS", "Outbox", "Inbox", "count_parts"]

PART_ROWS = 1 << 18  # points per part: 8 MiB sealed per array, far below a link's message cap
MAX_ROWS = 1 << 31  # a declared array larger than this is refused before anything is allocated


def count_parts(arrays: dict[str, np.ndarray], part_rows: int) -> int:
    """How many parts the arrays take (at least one: a step always answers)."""
    longest = max((len(a) for a in arrays.values()), default=0)
    return max(1, -(-longest // part_rows))


@dataclass
class Outbox:
    """One step's arrays waiting to be pulled, part by part, in order."""

    kind: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    part_rows: int
    parts: int
    next: int = 1  # part 0 leaves with the step's reply
    tag: str = field(default_factory=lambda: os.urandom(8).hex())  # binds the parts of this one payload

    def part(self, k: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and sealed meta of part k (slices: views of the whole arrays, copied only when sealed)."""
        lo, hi = k * self.part_rows, (k + 1) * self.part_rows
        arrays = {name: a[lo:hi] for name, a in self.arrays.items()}
        rows = {name: len(a) for name, a in self.arrays.items()}
        return arrays, {**self.meta, "part": k, "parts": self.parts, "rows": rows, "payload": self.tag}


@dataclass
class Inbox:
    """Parts of one step from one peer, written into arrays allocated once from the first part's sealed meta."""

    kind: str
    parts: int
    rows: dict[str, int]
    tag: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    received: int = 0

    @classmethod
    def start(cls, me: str, peer: str, inner: Message, expected: dict[str, tuple[int, int]]) -> Inbox:
        """The inbox of a payload whose first part is `inner`; `expected` maps each array the step carries to the
        (least, most) rows the protocol allows it, so a lying first part is refused before any allocation."""
        meta = inner.meta
        parts, rows, tag = meta.get("parts"), meta.get("rows"), meta.get("payload")
        if (meta.get("part") != 0 or not isinstance(parts, int) or parts < 1 or not isinstance(rows, dict)
                or not all(isinstance(v, int) and 0 <= v <= MAX_ROWS for v in rows.values())
                or set(rows) != set(inner.arrays) or not isinstance(tag, str)):
            raise PsiError(f"party {me!r}: {peer!r} sent a {inner.kind} payload without a valid first part")
        if set(rows) != set(expected) or not all(expected[k][0] <= v <= expected[k][1] for k, v in rows.items()):
            raise PsiError(f"party {me!r}: {peer!r}'s {inner.kind} payload declares arrays or row totals that "
                           "disagree with the set sizes this party already knows (the offer's and its own)")
        box = cls(kind=inner.kind, parts=parts, rows={str(k): int(v) for k, v in rows.items()}, tag=tag)
        box.arrays = {name: np.empty((n, POINT_BYTES), dtype=np.uint8) for name, n in box.rows.items()}
        box.filled = dict.fromkeys(box.rows, 0)
        return box

    def add(self, me: str, peer: str, inner: Message) -> None:
        """Write part `received` into place; anything out of order, extra or oversized aborts the step."""
        meta = inner.meta
        if (inner.kind != self.kind or meta.get("part") != self.received or meta.get("parts") != self.parts
                or meta.get("rows") != self.rows or meta.get("payload") != self.tag
                or set(inner.arrays) != set(self.rows)):
            raise PsiError(f"party {me!r}: part {self.received} of {peer!r}'s {self.kind} payload is missing, "
                           "repeated or out of order")
        for name, chunk in inner.arrays.items():
            chunk = np.asarray(chunk)
            start, stop = self.filled[name], self.filled[name] + len(chunk)
            if chunk.dtype != np.uint8 or chunk.ndim != 2 or chunk.shape[1] != POINT_BYTES or stop > self.rows[name]:
                raise PsiError(f"party {me!r}: malformed points in part {self.received} from {peer!r}")
            self.arrays[name][start:stop] = chunk
            self.filled[name] = stop
        self.received += 1

    @property
    def complete(self) -> bool:
        return self.received == self.parts

    def message(self, me: str, peer: str, last: Message) -> Message:
        """The whole payload as one message (the last part's meta), once every row arrived."""
        if not self.complete or self.filled != self.rows:
            raise PsiError(f"party {me!r}: {peer!r}'s {self.kind} payload is incomplete")
        meta = {k: v for k, v in last.meta.items() if k not in ("part", "parts", "rows", "payload")}
        return Message(last.run_id, last.step, last.sender, last.recipient, last.kind, self.arrays, meta)
