"""Secure vertical LR, who is who: the label holder (bank), the helper and the other feature holders of one run.

Why apart: the roles are public protocol facts used by every step (which pair holds the residual shares, who
co-holds a party's weight shares, who sends whom Beaver pieces) and by the plaintext baseline and the session
setup, none of which needs the protocol's constants or steps.

What each role learns: nothing; the roles are public to every party of the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Roles"]


@dataclass(frozen=True)
class Roles:
    """Who is who in one secure LR run (public to all parties)."""

    bank: str
    helper: str
    others: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return (self.bank, self.helper, *self.others)

    @property
    def holders(self) -> tuple[str, str]:
        return (self.bank, self.helper)

    def co_holder(self, party: str) -> str:
        """Shared weights: the residual holder that holds the other share of `party`'s weights."""
        return self.helper if party == self.bank else self.bank

    def holders_for(self, party: str) -> list[str]:
        """The residual holders that send `party` Beaver pieces of X_p^T r_Q (every holder but itself)."""
        return [q for q in self.holders if q != party]

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Roles:
        return cls(meta["bank"], meta["helper"], tuple(meta["others"]))
