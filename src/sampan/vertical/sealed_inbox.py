"""A party's inbox of sealed envelopes relayed by the coordinator, shared by the vertical protocols' steps.

Why apart: secure LR, GBDT, WOE and scoring all receive pairwise envelopes the same way (arrays named
``from:<sender>:<n>`` in a relayed message) and pop them by (sender, name) when a step needs them; an envelope
may arrive a wave before the step that uses it.

What each role learns: nothing new; the coordinator relays envelopes sealed under the signed run keys
(`sampan.crypto.channel`), and only the addressed party opens them.
"""

from __future__ import annotations

import numpy as np

from sampan.crypto.channel import SealedChannels
from sampan.wire import Message

__all__ = ["receive"]


def receive(msg: Message, channels: SealedChannels, inbox: dict[tuple[str, str], np.ndarray]) -> None:
    """Open the envelopes the coordinator relayed (arrays named 'from:<sender>:<n>') into `inbox`.

    Keyed by (sender, array name); a protocol step pops what it needs, so an envelope may arrive a
    wave earlier than the step that uses it.
    """
    for key, value in msg.arrays.items():
        if key.startswith("from:"):
            sender = key.split(":")[1]
            for name, array in channels.open_arrays(sender, value).items():
                inbox[(sender, name)] = array


def _take(inbox: dict[tuple[str, str], np.ndarray], me: str, sender: str, name: str) -> np.ndarray:
    """Pop one envelope's array; a missing one is an error naming the party, the sender and the array."""
    try:
        return inbox.pop((sender, name))
    except KeyError:
        raise ValueError(f"party {me!r}: expected {name!r} from {sender!r} has not arrived") from None
