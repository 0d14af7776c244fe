"""What the verifier sees of its own Sampan party: the tap wrapper and the Byzantine hook, for both modes.

Why its own module: the in-process mode (`sampan.web.bench_jobs`, the party inside the platform's simulated
federation) and the deployed mode (`sampan_agent`, a real party agent dialling the coordinator over gRPC and mutual
TLS) wrap the very same Sampan party app the same way, so the tap kinds and the point where the hook acts are the
same in both. ``place`` is anything with ``tap``, ``update_hook`` and ``left`` (a `sampan_kit.Seat`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.wire import Message

__all__ = ["Seated", "seat_mod", "verifier_mod"]


class Seated:
    """The verifier's party: its real Sampan handlers, every message shown to the verifier's tap.

    The model update is tapped as ``update`` with the arrays that leave the party: in the clear, ``weights`` (the
    global model plus the party's delta: coefficients, intercept last) and ``update`` (the delta Sampan sends);
    under secure aggregation ``masked`` (the whole masked input) and ``masked_update`` (its first d ring elements,
    the masked coordinates of the update)."""

    def __init__(self, app: Any, place: Any) -> None:
        self.app, self.name, self.place = app, app.name, place

    def handle(self, message: Message) -> Message:
        tap = self.place.tap
        tap.received(message.kind, message.step, dict(message.arrays))
        if self.place.left.is_set():
            raise ConnectionError(f"party {self.name!r} left (the verifier stopped its kit)")
        reply: Message = self.app.handle(message)
        arrays = dict(reply.arrays)
        if reply.kind == "fit_result" and "params" in message.arrays:
            d = int(np.size(message.arrays["params"]))
            if "update" in arrays and np.size(arrays["update"]) == d:
                arrays["weights"] = np.asarray(message.arrays["params"], np.float64) + arrays["update"]
            elif "masked" in arrays:
                arrays["masked_update"] = np.asarray(arrays["masked"])[:d]
        tap.sent("update" if reply.kind == "fit_result" else reply.kind, reply.step, arrays)
        return reply


def verifier_mod(place: Any) -> Any:
    """A party-side mod just inside SecAgg+ (after the party's own DP3 clip and noise, before masking): taps the
    clear update as ``update_clear`` and lets the verifier's Byzantine hook replace it, as a party under the
    verifier's control could. The hook sees and returns full weights (global model + delta)."""

    def mod(message: Message, inner: Callable[[Message], Message]) -> Message:
        reply = inner(message)
        if message.kind != "fit" or reply.is_error or "update" not in reply.arrays or "params" not in message.arrays:
            return reply
        start = np.asarray(message.arrays["params"], dtype=np.float64)
        delta = np.asarray(reply.arrays["update"], dtype=np.float64)
        hook = place.update_hook
        if hook is not None:
            weights = np.asarray(hook(message.step, start + delta), dtype=np.float64)
            # a malformed (wrong-length) update leaves as the hook made it: the coordinator must cope with it
            delta = weights - start if weights.shape == start.shape else weights
            reply = Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind,
                            {**reply.arrays, "update": delta}, reply.meta)
        clear = {"weights": start + delta, "update": delta} if delta.shape == start.shape else {"update": delta}
        place.tap.sent("update_clear", message.step, clear)
        return reply

    return mod


def seat_mod(app: Any, place: Any) -> None:
    """Insert `verifier_mod` right inside the party's SecAgg+ mod (innermost when there is none)."""
    mods = getattr(app, "mods", None)
    if not isinstance(mods, list):
        return
    at = next((i + 1 for i, m in enumerate(mods) if getattr(m, "__qualname__", "").startswith("secagg_mod.")),
              len(mods))
    mods.insert(at, verifier_mod(place))
