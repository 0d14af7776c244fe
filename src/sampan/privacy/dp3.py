"""DP3: differential privacy at the aggregator (DP-FedAvg, McMahan et al. 2018; Andrew et al. 2021).

Each selected party clips its model delta to L2 norm S (party side, so the same code serves secure
aggregation later); the aggregate is the *unweighted* sum of clipped deltas plus Gaussian noise of
standard deviation z_Δ·S, divided by the number of selected parties m (public). Adding or removing one
party's whole update changes the sum by at most S, so each round is a Gaussian mechanism with noise
multiplier z for *party-level* adjacency, which implies the same guarantee for any one record of
that party (the ledger's unit). Party selection is not secret here, so no amplification by sampling
is claimed.

Adaptive clipping (Andrew et al. 2021, "Differentially private learning with adaptive clipping"):
each party also reports b_i = 1[‖Δ_i‖ ≤ S]; the coordinator releases the noised count
(Σ b_i + N(0, σ_b²)) / m and moves S geometrically towards the target quantile γ:
S ← S·exp(−η·(b̃ − γ)). The count and the sum together are one Gaussian mechanism with noise multiplier
z when the sum uses z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) (their Theorem 1), so the quantile estimate is paid
for inside the same ledger event, never on the side.

Modes and what they trust:
- "central": parties send clipped, un-noised deltas; the coordinator adds all the noise. The
  coordinator sees individual clipped updates: it must be trusted. (Not allowed together with secure
  aggregation, whose point is that the coordinator sees only a sum: that sum must already be noised.)
- "distributed": every party adds an independent N(0, (z_Δ·S)²/m) share (and N(0, σ_b²/m) to its
  indicator), so the sum carries the full noise and no update leaves a party un-noised. On its own an
  individual update carries only 1/√m of the noise: the guarantee above holds for the aggregate; with
  secure aggregation (`sampan.privacy.secagg`) the aggregate is all the coordinator can see.

Distributed noise under dropouts (the hook secure aggregation uses): settings may carry
`noise_parties` = m_min, the least number of parties whose update must be in the sum for the round to
complete. Each party then adds variance σ²/m_min instead of σ²/m, so whichever ≥ m_min parties end up
in the sum, its noise variance is ≥ σ² and the ledger's charge (noise multiplier z) stays valid; when
nobody drops the sum carries σ²·m/m_min, the cost of tolerating dropouts. The mean then divides by the
number of parties actually summed (public: the coordinator knows who answered).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.randomness import secure_generator

Mode = Literal["central", "distributed"]


@dataclass(frozen=True)
class DP3Config:
    noise_multiplier: float            # z: noise std on the sum / S (after accounting for the count query)
    clip: float = 1.0                  # S, or its starting value when adaptive
    mode: Mode = "central"
    adaptive: bool = False
    target_quantile: float = 0.5       # γ: share of updates that should be unclipped
    clip_learning_rate: float = 0.2    # η
    count_noise: float | None = None   # σ_b; default max(m/20, 1.5·z): z_Δ ≈ 1.06·z

    def __post_init__(self) -> None:
        if self.noise_multiplier <= 0 or self.clip <= 0:
            raise ValueError("DP3 needs noise_multiplier > 0 and clip > 0")
        if not 0 < self.target_quantile < 1 or self.clip_learning_rate <= 0:
            raise ValueError("adaptive clipping needs 0 < target_quantile < 1 and clip_learning_rate > 0")
        if self.mode not in ("central", "distributed"):
            raise ValueError(f"DP3 mode must be 'central' or 'distributed', got {self.mode!r}")


def update_noise_multiplier(z: float, count_noise: float | None) -> float:
    """z_Δ for the update sum so that sum + count together cost exactly noise multiplier z."""
    if not count_noise:
        return z
    residual = z**-2 - (2 * count_noise) ** -2
    if residual <= 0:
        raise ValueError(f"count_noise {count_noise} too small for noise multiplier {z}: need 2·σ_b > z")
    return residual**-0.5


def clip_update(update: np.ndarray, clip: float) -> tuple[np.ndarray, bool]:
    """Party side: scale the delta to L2 norm <= clip; also say whether it was already within."""
    norm = float(np.linalg.norm(update))
    if norm <= clip:
        return update, True
    return update * (clip / norm), False


def party_release(update: np.ndarray, settings: dict[str, Any],
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
    """What a party sends under DP3: its clipped delta and indicator, plus noise shares if distributed."""
    clipped, within = clip_update(update, float(settings["clip"]))
    indicator = 1.0 if within else 0.0
    if settings["mode"] == "distributed":
        m = int(settings.get("noise_parties") or settings["parties"])  # dropout-tolerant share: see module doc
        rng = rng or secure_generator()
        clipped = GaussianMechanism(settings["clip"], settings["sum_sigma"] / math.sqrt(m)).release(clipped, rng=rng)
        if settings.get("count_sigma"):
            indicator = float(GaussianMechanism(1.0, settings["count_sigma"] / math.sqrt(m)).release(indicator, rng=rng))
    return clipped, indicator


class DP3Aggregation:
    """Coordinator side of one run's DP3: clip state, settings for parties, the noisy mean."""

    def __init__(self, config: DP3Config, clip: float | None = None) -> None:
        self.config = config
        self.clip = float(clip if clip is not None else config.clip)

    def settings(self, parties: int, noise_multiplier: float | None = None) -> dict[str, Any]:
        """JSON-able settings sent to each selected party this round (all public).

        `noise_multiplier` overrides the configured z for this round (a noise schedule)."""
        z = float(noise_multiplier if noise_multiplier is not None else self.config.noise_multiplier)
        count_sigma = None
        if self.config.adaptive:  # Andrew et al. use m/20; small consortia need more so z_Δ stays near z
            count_sigma = self.config.count_noise if self.config.count_noise is not None else \
                max(parties / 20, 1.5 * z)
        z_update = update_noise_multiplier(z, count_sigma)
        return {"clip": self.clip, "mode": self.config.mode, "parties": parties,
                "sum_sigma": z_update * self.clip, "count_sigma": count_sigma,
                "noise_multiplier": z}

    def aggregate(self, clipped_updates_sum: np.ndarray, indicators_sum: float, settings: dict[str, Any],
                  rng: np.random.Generator | None = None) -> np.ndarray:
        """Noisy mean of clipped deltas; moves the clip when adaptive. Central noise is added here."""
        m = int(settings["parties"])
        total, count = clipped_updates_sum, indicators_sum
        if self.config.mode == "central":
            rng = rng or secure_generator()
            total = GaussianMechanism(self.clip, settings["sum_sigma"]).release(total, rng=rng)  # sigma = z_Δ·S
            if settings.get("count_sigma"):
                count = float(GaussianMechanism(1.0, settings["count_sigma"]).release(count, rng=rng))
        if self.config.adaptive:
            unclipped_share = count / m
            self.clip *= math.exp(-self.config.clip_learning_rate * (unclipped_share - self.config.target_quantile))
        return total / m
