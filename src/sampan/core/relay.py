"""Party-to-party envelopes carried by the coordinator between waves of requests.

Protocols in which parties talk to each other (PSI, secure LR, vertical GBDT, scoring) put sealed
envelopes addressed ``to:<party>`` in their replies; the relay holds them and hands each party its
mail with its next request. The coordinator only ever holds ciphertext (`sampan.crypto.channel`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from sampan.core.transport import Transport
from sampan.wire import Message

__all__ = ["Relay"]


class Relay:
    """Holds sealed envelopes between waves and hands each party its mail with its next request."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._mail: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        self.step = 0

    def collect(self, reply: Message) -> None:
        for key, value in reply.arrays.items():
            if key.startswith("to:"):
                box = self._mail[key[3:]]
                box[f"from:{reply.sender}:{len(box)}"] = value

    def request(self, party: str, kind: str, arrays: dict[str, np.ndarray] | None = None,
                meta: dict | None = None) -> Message:
        mail = self._mail.pop(party, {})
        return Message(self.run_id, self.step, "coordinator", party, kind, {**mail, **(arrays or {})}, meta or {})

    def wave(self, transport: Transport, messages: Iterable[Message]) -> list[Message]:
        replies = list(transport.exchange(messages))
        for reply in replies:
            self.collect(reply)
        self.step += 1
        return replies
