"""Public parameters of secure aggregation, its two errors and the fixed-point encoding of inputs.

Why apart: every party and the coordinator agree on these before any key is made; they hold no secret.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sampan.crypto.channel import ChannelError
from sampan.errors import ProtocolError

KEY_BYTES = 32
MIN_CONTRIBUTORS = 3  # with two contributors, each reads the other's input from the sum
_MASK_LABEL = "secagg-pairwise-mask"
_ROLE = "client"  # the signer's role in the protocol (signed with its keys)
# message kinds of the five steps; the masked-input step travels as the workflow's own request ("fit")
STEP_KINDS = ("secagg_keys", "secagg_share", "fit", "secagg_consistency", "secagg_unmask")


class SecAggAbort(ProtocolError, RuntimeError):
    """Too few parties at some step (or an inconsistent reconstruction): the round must be retried.

    `survivors` are the parties that answered the step at which the round stopped — the natural set
    to retry with; `stage` names the step.
    """

    def __init__(self, stage: str, reason: str, survivors: Iterable[str]) -> None:
        super().__init__(f"secure aggregation aborted at {stage}: {reason}")
        self.stage, self.reason, self.survivors = stage, reason, sorted(survivors)


class SecAggRefused(ChannelError):
    """A party refuses a request that could reveal more than the protocol allows (names party and label)."""


@dataclass(frozen=True)
class SecAggParams:
    """Public parameters of one secure aggregation (the same for every party).

    threshold: share of a party's share holders needed to rebuild its secrets (t = ceil(threshold·k));
      on a full graph, k = n - 1. It is also the least share of the parties that advertised keys whose
      masked input must arrive.
    min_contributors: the least number of inputs ever summed (>= 3); m_min = max(min_contributors,
      ceil(threshold·n)).
    neighbours: k, the degree of the neighbour graph (even), or None for the complete graph.
    """

    threshold: float = 0.6
    neighbours: int | None = None
    frac_bits: int = 32
    max_abs: float = 1e4
    min_contributors: int = MIN_CONTRIBUTORS

    def __post_init__(self) -> None:
        if not 0.5 < self.threshold <= 1:
            raise ValueError(f"secure aggregation threshold must be in (0.5, 1], got {self.threshold}")
        if self.neighbours is not None and (self.neighbours < 2 or self.neighbours % 2):
            raise ValueError(f"neighbours must be an even number >= 2, got {self.neighbours}")
        if not 1 <= self.frac_bits <= 52 or self.max_abs <= 0:
            raise ValueError("frac_bits must be in [1, 52] and max_abs > 0")
        if self.min_contributors < MIN_CONTRIBUTORS:
            raise ValueError(f"secure aggregation min_contributors must be at least {MIN_CONTRIBUTORS} (with two, "
                             f"each contributor reads the other's input from the sum), got {self.min_contributors}")

    def check_capacity(self, parties: int) -> None:
        """The sum of `parties` clamped, encoded values must stay inside the signed ring."""
        bound = parties * self.max_abs * 2.0**self.frac_bits
        if bound >= 2.0**63:
            raise ValueError(
                f"secure aggregation of {parties} parties with max_abs {self.max_abs} and frac_bits {self.frac_bits} "
                f"could overflow Z_2^64 ({bound:.3g} >= 2^63): lower max_abs or frac_bits")

    def min_live(self, advertised: int) -> int:
        return max(self.min_contributors, math.ceil(self.threshold * advertised - 1e-9))

    def share_threshold(self, holders: int) -> int:
        return max(1, min(holders, math.ceil(self.threshold * holders - 1e-9)))


def encode_vector(x: np.ndarray, params: SecAggParams) -> np.ndarray:
    """Clamp to ±max_abs, then round(x·2^f) as elements of Z_2^64 (negatives wrap)."""
    clamped = np.clip(np.asarray(x, dtype=np.float64), -params.max_abs, params.max_abs)
    if not np.all(np.isfinite(clamped)):
        raise ValueError("secure aggregation input contains NaN")
    return np.rint(clamped * 2.0**params.frac_bits).astype(np.int64).view(np.uint64)


def decode_vector(u: np.ndarray, params: SecAggParams) -> np.ndarray:
    return np.asarray(u, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**params.frac_bits
