"""The coordinator's handle on a vertical federation: keys, alignment, training, evaluation, scoring.

A `VerticalSession` drives parties only through a `Transport`, so the same code runs in-process
(tests, the demo) and across organisations. It knows what the coordinator may know: party names,
sizes, the batch schedule and aggregate metrics.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.core.relay import Relay
from sampan.core.transport import Transport
from sampan.vertical.psi import align
from sampan.vertical.secure_lr import Roles
from sampan.vertical.training import VerticalLRConfig, VerticalLRResult, train_secure_lr

__all__ = ["VerticalSession", "Splits"]


@dataclass(frozen=True)
class Splits:
    """Positions in the aligned order (public: the coordinator chooses them knowing only the count)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @classmethod
    def random(cls, n: int, *, test_fraction: float = 0.2, val_fraction: float = 0.15, seed: int = 0) -> Splits:
        if n < 10:
            raise ValueError(f"only {n} aligned rows: too few to split into train/validation/test")
        order = np.random.default_rng(seed).permutation(n)
        n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
        return cls(np.sort(order[n_test + n_val:]), np.sort(order[n_test:n_test + n_val]), np.sort(order[:n_test]))


class VerticalSession:
    def __init__(self, transport: Transport, *, label_holder: str, partners: list[str], run_id: str | None = None,
                 progress: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        if not partners:
            raise ValueError("a vertical run needs at least one partner besides the label holder")
        if label_holder in partners:
            raise ValueError(f"{label_holder!r} is both the label holder and a partner")
        missing = [p for p in [label_holder, *partners] if p not in transport.parties]
        if missing:
            raise ValueError(f"parties {missing} are not reachable through the transport ({transport.parties})")
        self.transport = transport
        self.label_holder, self.partners = label_holder, list(partners)
        self.run_id = run_id or secrets.token_hex(8)
        self.progress = progress or (lambda stage, info: None)
        self.relay = Relay(self.run_id)
        self.alignment: Any = None
        self.n_aligned: int | None = None
        self.requests_made = 0  # scoring request ids are <run id>/<n>; a resumed workflow continues the count

    @property
    def parties(self) -> list[str]:
        return [self.label_holder, *self.partners]

    @property
    def roles(self) -> Roles:
        return Roles(self.label_holder, self.partners[0], tuple(self.partners[1:]))

    def connect(self) -> None:
        """Every party makes a run key pair and signs its public half; the coordinator hands everyone the
        signed keys, and each party checks its peers' signatures before deriving any channel."""
        replies = self.relay.wave(self.transport, (self.relay.request(p, "vertical.hello") for p in self.parties))
        keys: dict[str, np.ndarray] = {}
        roles: dict[str, str] = {}
        for r in replies:
            keys[f"key:{r.sender}"] = r.arrays["public_key"]
            keys.update({f"{r.sender}/{k}": r.arrays[k] for k in ("certificate", "signature") if k in r.arrays})
            roles[r.sender] = str(r.meta.get("role", ""))
        self.relay.wave(self.transport, (self.relay.request(p, "vertical.peers", keys, {"roles": roles})
                                         for p in self.parties))

    def align(self, backend: str = "ecdh") -> Any:
        start = time.perf_counter()
        self.alignment = align(self.transport, self.run_id, self.label_holder, self.partners, backend=backend)
        self.n_aligned = int(self.alignment.n_aligned)
        self.progress("aligned", {"n_aligned": self.n_aligned, "seconds": time.perf_counter() - start})
        return self.alignment

    def splits(self, *, test_fraction: float = 0.2, val_fraction: float = 0.15, seed: int = 0) -> Splits:
        """The run's splits: the parties pin one partition of their customers per dataset (`sampan.vertical.rows`),
        so the label holder reports where the pinned sets sit in this alignment, and places the rest itself
        (`bank_splits`: its test file, or hash(seed, customer id) keyed with its secret split key). The bank
        evaluates only the test customers it announced here. The coordinator learns positions only."""
        n = self.n_aligned or 0
        if n < 10:
            raise ValueError(f"only {n} aligned rows: too few to split into train/validation/test")
        fresh = Splits.random(n, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
        reply = self.relay.wave(self.transport, [self.relay.request(self.label_holder, "vertical.splits", meta={
            "seed": int(seed), "test_fraction": float(test_fraction), "val_fraction": float(val_fraction)})])[0]
        # in the bank's order (keyed hash(seed, id)): minibatches drawn by index hold the same customers every run
        pinned = {k: np.asarray(reply.arrays[k], dtype=np.int64) for k in ("train", "val", "test") if k in reply.arrays}
        taken = np.concatenate([np.zeros(0, dtype=np.int64), *pinned.values()])
        parts = {k: pinned.get(k, np.setdiff1d(getattr(fresh, k), taken)) for k in ("train", "val", "test")}
        return Splits(parts["train"], parts["val"], parts["test"])

    def train(self, splits: Splits, config: VerticalLRConfig = VerticalLRConfig(), *,
              seed: int = 0) -> VerticalLRResult:
        return train_secure_lr(self.transport, self.run_id, self.roles, splits.train, splits.val, config, seed=seed,
                               progress=lambda rec: self.progress("epoch", rec))

    def bank_only(self, splits: Splits, config: VerticalLRConfig = VerticalLRConfig(), *,
                  seed: int = 0) -> dict[str, Any]:
        """The label holder's own-columns model on the same rows: the baseline partners must beat."""
        reply = self.relay.wave(self.transport, [self.relay.request(self.label_holder, "vertical.local_baseline", {
            "train_rows": splits.train, "val_rows": splits.val, "test_rows": splits.test},
            {"lr": config.learning_rate, "l2": config.l2, "epochs": config.epochs,
             "batch_size": config.batch_size, "seed": seed})])[0]
        return dict(reply.meta)

    def evaluate(self, rows: np.ndarray, *, stability_against: str | None = None) -> dict[str, Any]:
        """Joint scoring of held-out aligned rows; the bank returns aggregate metrics only.

        The bank evaluates only the run's test rows (fixed by the first evaluation, disjoint from every
        training and validation row), each model once (`sampan.vertical.rows`).

        `stability_against` names an earlier evaluation (its `request_id` in the result): the bank adds
        the population stability index of this batch's scores against that one's.
        """
        meta = {"stability_reference": stability_against} if stability_against else {}
        reply, request_id = self._score({"aligned": np.asarray(rows, dtype=np.int64)}, meta)
        return {**dict(reply.meta), "request_id": request_id}

    def score(self, applicants: list[str]) -> str:
        """Score applications by registration number. Returns the request id; results stay at the bank."""
        if not applicants:
            raise ValueError("no applicants to score")
        request_id = self._score({}, {"applicants": [str(a) for a in applicants]})[1]
        return request_id

    def _score(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> tuple[Any, str]:
        self.requests_made += 1
        request_id = f"{self.run_id}/{self.requests_made}"
        base = {"request_id": request_id, "partners": self.partners, "bank": self.label_holder}
        relay, bank = self.relay, self.label_holder
        relay.wave(self.transport, [relay.request(bank, "score.start", arrays, {**base, **meta})])
        relay.wave(self.transport, (relay.request(p, "score.partial", meta=base) for p in self.partners))
        reply = relay.wave(self.transport, [relay.request(bank, "score.finish", meta=base)])[0]
        return reply, request_id
