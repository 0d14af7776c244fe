"""DP3: differential privacy at the aggregator (DP-FedAvg, McMahan et al. 2018; Andrew et al. 2021).

Each selected party clips its model delta to L2 norm S (party side, so the same code serves secure
aggregation later); the aggregate is the *unweighted* sum of clipped deltas plus Gaussian noise of
standard deviation z_Δ·S, divided by the number of selected parties m (public). Party selection is not
secret here, so no amplification by sampling is claimed.

Sensitivity at the ledger's unit (record-level, add-or-remove one record of one party): one record can
change that party's local training arbitrarily, so its clipped delta can move from +S·u to −S·u. The
sum's L2 sensitivity is therefore 2S, not S (S is the sensitivity only for adding or removing a whole
party's update). Without adaptive clipping each round is one Gaussian mechanism with record-level noise
multiplier z = z_Δ/2: a configured target z sends z_Δ = 2z, twice the noise a party-level reading needs.

Adaptive clipping (Andrew et al. 2021, "Differentially private learning with adaptive clipping"):
each party also reports b_i = 1[‖Δ_i‖ ≤ S]; the coordinator releases the noised count
(Σ b_i + N(0, σ_b²)) / m and moves S geometrically towards the target quantile γ:
S ← S·exp(−η·(b̃ − γ)). One record can flip b_i (sensitivity 1, whatever centring is used) together
with moving the sum by 2S, so the joint release (sum, count) is one Gaussian mechanism with
record-level noise multiplier (4/z_Δ² + 1/σ_b²)^(−1/2) (`record_level_noise_multiplier`); the sum
uses z_Δ = 2·(z⁻² − σ_b⁻²)^(−1/2) so that it equals the target z. The quantile estimate is paid for
inside the same ledger event, never on the side. Without adaptive clipping no indicator is released
(`party_release` sends a constant 0).

The ledger charges the record-level multiplier computed from the settings actually sent
(`settings_noise_multiplier`); the party-level multiplier (1/z_Δ² + 1/σ_b²)^(−1/2) may be reported
beside it, clearly labelled, never instead of it.

Modes and what they trust:
- "central": parties send clipped, un-noised deltas; the coordinator adds all the noise. The
  coordinator sees individual clipped updates: it must be trusted. (Not allowed together with secure
  aggregation, whose point is that the coordinator sees only a sum: that sum must already be noised.)
- "distributed": every party adds an independent N(0, (z_Δ·S)²/m) share (and N(0, σ_b²/m) to its
  indicator), so the sum carries the full noise and no update leaves a party un-noised. On its own an
  individual update carries only 1/√m of the noise: the guarantee above holds for the aggregate; with
  secure aggregation (`sampan.privacy.secagg`) the aggregate is all the coordinator can see.

What each role learns: the coordinator (central mode) each party's clipped delta and indicator bit;
(distributed mode, no SecAgg) each party's delta and bit with 1/√m of the noise; (with SecAgg) only the
noised sum and noised count. Everyone who receives the next global model learns the noised mean and,
under adaptive clipping, the next clip (a function of the noised count). Parties check the settings
against their own minimum-noise policy before anything leaves them (`sampan.privacy.party_policy`).

Distributed noise under dropouts (the hook secure aggregation uses): settings may carry
`noise_parties` = m_min, the least number of parties whose update must be in the sum for the round to
complete. Each party then adds variance σ²/m_min instead of σ²/m, so whichever ≥ m_min parties end up
in the sum, its noise variance is ≥ σ² and the ledger's charge stays valid; when nobody drops the sum
carries σ²·m/m_min, the cost of tolerating dropouts. The mean then divides by the number of parties
actually summed (public: the coordinator knows who answered).
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
    noise_multiplier: float            # z: record-level noise multiplier of the joint (sum, count) release
    clip: float = 1.0                  # S, or its starting value when adaptive
    mode: Mode = "central"
    adaptive: bool = False
    target_quantile: float = 0.5       # γ: share of updates that should be unclipped
    clip_learning_rate: float = 0.2    # η
    count_noise: float | None = None   # σ_b; default max(m/20, 3·z): z_Δ ≈ 2.12·z

    def __post_init__(self) -> None:
        if self.noise_multiplier <= 0 or self.clip <= 0:
            raise ValueError("DP3 needs noise_multiplier > 0 and clip > 0")
        if not 0 < self.target_quantile < 1 or self.clip_learning_rate <= 0:
            raise ValueError("adaptive clipping needs 0 < target_quantile < 1 and clip_learning_rate > 0")
        if self.mode not in ("central", "distributed"):
            raise ValueError(f"DP3 mode must be 'central' or 'distributed', got {self.mode!r}")


SUM_SENSITIVITY = 2.0      # in units of S: one record moves a party's clipped delta from +S·u to −S·u
COUNT_SENSITIVITY = 1.0    # one record flips the party's indicator bit
COUNT_NOISE_FACTOR = 3.0   # default σ_b = max(m/20, 3·z): the count takes 1/9 of the budget, z_Δ ≈ 2.12·z


def record_level_noise_multiplier(sum_multiplier: float, count_sigma: float | None) -> float:
    """Record-level multiplier of the joint (sum, count) release: (4/z_Δ² + 1/σ_b²)^(−1/2).

    `sum_multiplier` is z_Δ = noise std on the sum / S; `count_sigma` is σ_b (None: no count released)."""
    inverse_sq = (SUM_SENSITIVITY / sum_multiplier) ** 2
    if count_sigma:
        inverse_sq += (COUNT_SENSITIVITY / count_sigma) ** 2
    return inverse_sq**-0.5


def party_level_noise_multiplier(sum_multiplier: float, count_sigma: float | None) -> float:
    """Multiplier for adding or removing one party's whole update (sum moves by S): a weaker unit, for display."""
    inverse_sq = sum_multiplier**-2 + (count_sigma**-2 if count_sigma else 0.0)
    return inverse_sq**-0.5


def party_level_from_record_level(z: float, count_sigma: float | None) -> float:
    """The party-level multiplier of a release whose record-level multiplier is z (same z_Δ, σ_b)."""
    if not count_sigma:
        return SUM_SENSITIVITY * z
    return party_level_noise_multiplier(update_noise_multiplier(z, count_sigma), count_sigma)


def update_noise_multiplier(z: float, count_sigma: float | None) -> float:
    """z_Δ for the update sum so that sum + count together cost exactly record-level multiplier z."""
    if not count_sigma:
        return SUM_SENSITIVITY * z
    residual = z**-2 - (COUNT_SENSITIVITY / count_sigma) ** 2
    if residual <= 0:
        raise ValueError(f"count_noise {count_sigma} too small for noise multiplier {z}: need σ_b > z")
    return SUM_SENSITIVITY * residual**-0.5


def settings_noise_multiplier(settings: dict[str, Any]) -> float:
    """The record-level multiplier that DP3 settings as sent really give: what the ledger charges."""
    clip, sum_sigma = float(settings["clip"]), float(settings["sum_sigma"])
    if not (math.isfinite(clip) and math.isfinite(sum_sigma)) or clip <= 0 or sum_sigma <= 0:
        return 0.0
    count_sigma = settings.get("count_sigma")
    return record_level_noise_multiplier(sum_sigma / clip, float(count_sigma) if count_sigma else None)


def clip_update(update: np.ndarray, clip: float) -> tuple[np.ndarray, bool]:
    """Party side: scale the delta to L2 norm <= clip; also say whether it was already within.

    A non-finite delta (the exact local update overflowed: a coordinator-chosen learning rate or scaler can make
    that a function of the party's rows) becomes zero, counted as clipped (review R12-HOR-5): zero is inside the
    clip ball, so the sum's sensitivity stays 2·clip, and no NaN reaches the noise, the SecAgg encoder or the
    coordinator to tell the two cases apart. A finite delta whose norm overflows is scaled by its peak first."""
    update = np.asarray(update, dtype=np.float64)
    if not np.all(np.isfinite(update)):
        return np.zeros_like(update), False
    peak = float(np.max(np.abs(update))) if update.size else 0.0
    if peak == 0.0:
        return update, True
    norm = peak * float(np.linalg.norm(update / peak))
    if norm <= clip:
        return update, True
    return (update / peak) * (clip / (norm / peak)), False


def party_release(update: np.ndarray, settings: dict[str, Any],
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, float]:
    """What a party sends under DP3: its clipped delta and indicator, plus noise shares if distributed.

    The indicator is released only when the settings noise it (`count_sigma`, adaptive clipping);
    otherwise it is a constant 0, so an un-noised, uncharged bit never leaves the party."""
    clipped, within = clip_update(update, float(settings["clip"]))
    indicator = 1.0 if within and settings.get("count_sigma") else 0.0
    if settings["mode"] == "distributed":
        m = int(settings.get("noise_parties") or settings["parties"])  # dropout-tolerant share: see module doc
        rng = rng or secure_generator()
        sensitivity = SUM_SENSITIVITY * float(settings["clip"])  # record-level (see module doc)
        sum_noise = GaussianMechanism(sensitivity, settings["sum_sigma"] / math.sqrt(m))
        clipped = np.asarray(sum_noise.release(clipped, rng=rng))
        if settings.get("count_sigma"):
            count_noise = GaussianMechanism(1.0, settings["count_sigma"] / math.sqrt(m))
            indicator = float(count_noise.release(indicator, rng=rng))
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
        if self.config.adaptive:  # Andrew et al. use m/20; small consortia need more so z_Δ stays near 2z
            count_sigma = self.config.count_noise if self.config.count_noise is not None else \
                max(parties / 20, COUNT_NOISE_FACTOR * z)
        z_update = update_noise_multiplier(z, count_sigma)
        settings: dict[str, Any] = {"clip": self.clip, "mode": self.config.mode, "parties": parties,
                                    "sum_sigma": z_update * self.clip, "count_sigma": count_sigma}
        settings["noise_multiplier"] = settings_noise_multiplier(settings)  # record-level, = z up to rounding
        return settings

    def aggregate(self, clipped_updates_sum: np.ndarray, indicators_sum: float, settings: dict[str, Any],
                  rng: np.random.Generator | None = None) -> np.ndarray:
        """Noisy mean of clipped deltas; moves the clip when adaptive. Central noise is added here."""
        m = int(settings["parties"])
        total, count = clipped_updates_sum, indicators_sum
        if self.config.mode == "central":
            rng = rng or secure_generator()
            sum_noise = GaussianMechanism(SUM_SENSITIVITY * self.clip, settings["sum_sigma"])
            total = np.asarray(sum_noise.release(total, rng=rng))
            if settings.get("count_sigma"):
                count = float(GaussianMechanism(1.0, settings["count_sigma"]).release(count, rng=rng))
        if self.config.adaptive:
            unclipped_share = count / m
            self.clip *= math.exp(-self.config.clip_learning_rate * (unclipped_share - self.config.target_quantile))
        return total / m
