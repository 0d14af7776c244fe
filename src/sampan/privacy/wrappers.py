"""Coordinator-side privacy as wrappers around a round's aggregation (DESIGN: "privacy is composed").

A horizontal round folds the parties' `fit` replies into an `UpdateAggregation` and asks it for the
mean update the strategy applies. Two wrappers change what that step sees or returns:

- `SecAggCollection` replaces "one reply per party" by a SecAgg+ attempt (`sampan.privacy.secagg`): the
  coordinator drives every stage as ONE fan-out to all parties (a stage costs one exchange whatever the
  number of parties) and hands the inner aggregation only the unmasked *sum*.
- `CentralDP3` sums the parties' clipped updates (unweighted) and adds the DP3 noise to that sum
  (central mode; in distributed mode the parties' noise shares are already in it), moving the clip when
  adaptive (`sampan.privacy.dp3.DP3Aggregation`).

What each role learns: the coordinator learns the output of the wrapped aggregation only — under SecAgg
the sum over the round's contributors (never one party's vector), under central DP3 the clipped updates
(it is the trusted role then; the parties' policies decide whether they accept that) and it releases only
the noised mean; parties learn nothing from these wrappers. Neither knows about transports or the store:
the workflow passes a ``stage`` callable that delivers one stage's requests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sampan.privacy.dp3 import DP3Aggregation
from sampan.privacy.secagg import SecAggServer

__all__ = ["CentralDP3", "SecAggCollection", "StageCall", "UpdateAggregation", "UpdateSum", "run_secagg_stages"]

# stage(kind, {party: (arrays, meta)}) -> {party: reply arrays, or None for a party that failed}: one fan-out
StageCall = Callable[[str, Mapping[str, tuple[dict[str, np.ndarray], dict[str, Any]]]],
                     Mapping[str, dict[str, np.ndarray] | None]]


@dataclass
class UpdateSum:
    """A round's updates already summed (SecAgg): Σ head, Σ DP3 indicator, Σ weighted loss, Σ weight."""

    head: np.ndarray
    indicator: float
    weighted_loss: float
    weight: float
    contributors: list[str] = field(default_factory=list)


class UpdateAggregation(Protocol):
    """What a round folds its replies into; `result` is the mean update the strategy applies."""

    def add(self, update: np.ndarray, weight: float, indicator: float) -> None: ...

    def add_sum(self, total: UpdateSum) -> None: ...

    def result(self) -> np.ndarray: ...


class CentralDP3:
    """DP3 around the aggregation: an unweighted running sum of clipped updates, noised once in `result`."""

    def __init__(self, dp3: DP3Aggregation, settings: Mapping[str, Any]) -> None:
        self.dp3, self.settings = dp3, dict(settings)
        self._sum: np.ndarray | None = None
        self._indicator = 0.0

    def add(self, update: np.ndarray, weight: float, indicator: float) -> None:
        self._sum = update.copy() if self._sum is None else self._sum + update
        self._indicator += indicator

    def add_sum(self, total: UpdateSum) -> None:
        self._sum, self._indicator = np.asarray(total.head, dtype=np.float64), float(total.indicator)
        self.settings["parties"] = len(total.contributors)  # the public m of the noisy mean: who contributed

    def result(self) -> np.ndarray:
        if self._sum is None:
            raise ValueError("DP3: no party contributed an update this round")
        return self.dp3.aggregate(self._sum, self._indicator, self.settings)


def run_secagg_stages(server: SecAggServer, stage: StageCall, masked_kind: str = "fit") -> np.ndarray:
    """Drive one SecAgg+ attempt, each stage one fan-out: keys, shares, masked input, consistency, unmask.

    A party missing from a stage's replies (or whose reply is malformed) is a dropout the protocol absorbs.
    Returns the unmasked sum in Z_2^64; raises `SecAggAbort` below the threshold or min_contributors."""
    steps = ((server.advertise_requests, "secagg_keys", server.receive_keys),
             (server.share_requests, "secagg_share", server.receive_shares),
             (server.masked_requests, masked_kind, lambda p, a: server.receive_masked(p, a["masked"])),
             (server.consistency_requests, "secagg_consistency", server.receive_signature),
             (server.unmask_requests, "secagg_unmask", server.receive_unmask))
    for make, kind, receive in steps:
        requests = make()
        if not requests:
            continue
        replies = stage(kind, requests)
        for party in requests:
            reply = replies.get(party)
            if reply is None:
                server.dropouts.setdefault(party, kind)
                continue
            try:
                receive(party, reply)
            except (KeyError, ValueError) as exc:
                server.dropouts.setdefault(party, f"{kind}: {exc}")
    return server.result()


class SecAggCollection:
    """SecAgg+ around the collection of a round's vectors: only their sum reaches the coordinator."""

    def __init__(self, server: SecAggServer, masked_kind: str = "fit") -> None:
        self.server, self.masked_kind = server, masked_kind

    def collect(self, stage: StageCall) -> np.ndarray:
        return run_secagg_stages(self.server, stage, self.masked_kind)
