"""INSECURE baseline: vertical logistic regression with partial logits and residuals in clear.

Exists only so benchmarks can price the cryptography of `secure_lr` on the same parties, transport,
batch schedule and data: here every feature holder sends its partial logit to the bank and the bank
sends the exact residual back, which reveals partners' scores to the bank and label information to
partners. Never use it on real data; `sampan.vertical` exposes it under this name only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sampan.core.relay import Relay
from sampan.core.transport import Transport
from sampan.vertical.model import LocalScaler
from sampan.vertical.secure_lr import MIN_BATCH_ROWS, Roles
from sampan.vertical.training import VerticalLRConfig, epoch_batches
from sampan.wire import Message

__all__ = ["PlainVerticalLRParty", "train_plain_vertical_lr"]


class PlainVerticalLRParty:
    def __init__(self, name: str, X_aligned: Callable[[], np.ndarray],
                 y_aligned: Callable[[], np.ndarray | None]) -> None:
        self.name = name
        self._X, self._y = X_aligned, y_aligned
        self.weights: np.ndarray | None = None
        self._pending: np.ndarray | None = None
        self.y: np.ndarray | None = None

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {"plr.setup": self.setup, "plr.forward": self.forward, "plr.residual": self.residual}

    def setup(self, msg: Message) -> Message:
        rows = msg.arrays["train_rows"]
        X = self._X()[rows]
        self.X = LocalScaler.fit(X).transform(X)
        self.y = None
        if msg.meta["bank"] == self.name:
            self.X = np.hstack([self.X, np.ones((len(self.X), 1))])
            labels = self._y()
            if labels is None:
                raise ValueError(f"party {self.name!r}: named the bank but holds no labels")
            self.y = labels[rows].astype(np.float64)
        self.weights = np.zeros(self.X.shape[1])
        self.lr, self.l2 = float(msg.meta["lr"]), float(msg.meta["l2"])
        return msg.reply("plr.ack")

    def _update(self, residual: np.ndarray | None) -> None:
        if residual is not None and self._pending is not None:
            if self.weights is None:
                raise ValueError(f"party {self.name!r}: plr.forward before plr.setup")
            X = self.X[self._pending]
            self.weights = self.weights - self.lr * (X.T @ residual / len(residual) + self.l2 * self.weights)

    def forward(self, msg: Message) -> Message:
        self._update(msg.arrays.get("r"))
        self._pending = msg.arrays["rows"]
        return msg.reply("plr.z", {"z": self.X[self._pending] @ self.weights})

    def residual(self, msg: Message) -> Message:
        """Bank only: exact sigmoid of the summed logits minus the label, sent back in clear."""
        z = msg.arrays["z_total"]
        if self.y is None:
            raise ValueError(f"party {self.name!r}: plr.residual is the bank's; this party holds no labels")
        r = 1.0 / (1.0 + np.exp(-z)) - self.y[self._pending]
        return msg.reply("plr.r", {"r": r})


def train_plain_vertical_lr(transport: Transport, run_id: str, roles: Roles, train_rows: np.ndarray,
                            config: VerticalLRConfig, *, epochs: int, seed: int = 0) -> list[float]:
    """Run `epochs` epochs; returns seconds per epoch (two waves per batch)."""
    relay = Relay(run_id)
    parties = list(roles.all)
    relay.wave(transport, (relay.request(p, "plr.setup", {"train_rows": np.asarray(train_rows)},
                                         {"bank": roles.bank, "lr": config.learning_rate, "l2": config.l2})
                           for p in parties))
    rng = np.random.default_rng(seed)
    seconds, r = [], None
    for _ in range(epochs):
        start = time.perf_counter()
        for rows in epoch_batches(rng.permutation(len(train_rows)), config.batch_size, MIN_BATCH_ROWS):
            extra: dict[str, np.ndarray] = {"r": r} if r is not None else {}
            replies = relay.wave(transport, (relay.request(p, "plr.forward", {"rows": rows, **extra}) for p in parties))
            z_total = np.sum([rep.arrays["z"] for rep in replies], axis=0)
            r = relay.wave(transport, [relay.request(roles.bank, "plr.residual", {"z_total": z_total})])[0].arrays["r"]
        seconds.append(time.perf_counter() - start)
    return seconds
