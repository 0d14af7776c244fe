"""The Message envelope: the only thing that crosses a party boundary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ERROR_KIND = "error"


@dataclass(frozen=True)
class Message:
    """One protocol step between two named endpoints.

    `arrays` carry numbers (model parameters, updates, histograms); `meta` carries small JSON-able
    facts (sizes, configuration, scalar metrics). Nothing else travels, so a reviewer can audit
    exactly what a party disclosed by reading the messages it sent.
    """

    run_id: str
    step: int
    sender: str
    recipient: str
    kind: str
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def reply(
        self,
        kind: str,
        arrays: Mapping[str, np.ndarray] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Message:
        """A message back to this one's sender, in the same run and step."""
        return Message(
            run_id=self.run_id,
            step=self.step,
            sender=self.recipient,
            recipient=self.sender,
            kind=kind,
            arrays=dict(arrays or {}),
            meta=dict(meta or {}),
        )

    def error_reply(self, exc: BaseException) -> Message:
        """Report a party-side failure without leaking a traceback (which may quote data)."""
        return self.reply(
            ERROR_KIND,
            meta={"error_type": type(exc).__name__, "error": str(exc), "request_kind": self.kind},
        )

    @property
    def is_error(self) -> bool:
        return self.kind == ERROR_KIND

    @property
    def nbytes(self) -> int:
        """Size of the array payload; used for traffic accounting in receipts."""
        return int(sum(a.nbytes for a in self.arrays.values()))
