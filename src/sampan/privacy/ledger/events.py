"""The privacy ledger's values: a party's Budget, one PrivacyEvent, the levels, and the accounting defaults.

Why apart: workflows, party policies and the synthesis fitter build these values without needing the
ledger's composition machinery; they are plain, validated, JSON-able data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant as _rdp

from sampan.privacy.composition import _base_dp_event

Level = Literal["DP1", "DP2", "DP3"]
Mechanism = Literal["gaussian", "laplace", "subsampled_gaussian"]
AccountantKind = Literal["rdp", "pld"]

LEVELS: tuple[Level, ...] = get_args(Level)
MECHANISMS: tuple[Mechanism, ...] = get_args(Mechanism)
ACCOUNTANTS: tuple[AccountantKind, ...] = get_args(AccountantKind)

UNIT_OF_PRIVACY = "record-level within each party"
NEIGHBOURING_RELATION = "add_or_remove_one"

# dp-accounting's own grid (1.1..10.9 by 0.1, 11..63, 128..1024): it covers epsilon from about 0.05 to
# 50 for Gaussian mechanisms at the deltas we use. Larger integer orders make every new subsampled-Gaussian
# curve slower (cost grows with the order) and only matter for pure-epsilon events, which the ledger
# already bounds by basic composition (see _RdpState.epsilon).
DEFAULT_RDP_ORDERS: tuple[float, ...] = tuple(float(o) for o in _rdp.DEFAULT_RDP_ORDERS)

# Measured on DP-SGD (q=256/60000, sigma=1.1, 14063 steps, delta=1e-5): 1e-4 gives eps 2.3817 in 0.57 s,
# 1e-3 gives 2.3905 (+0.4%, still an upper bound: discretisation is pessimistic) in 0.07 s, 1e-2 is 30% off.
DEFAULT_PLD_VALUE_DISCRETIZATION_INTERVAL = 1e-3


def _positive_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return value


@dataclass(frozen=True)
class Budget:
    """A party's (epsilon, delta) budget; epsilon is what the ledger reads off at this delta."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _positive_finite("Budget.epsilon", self.epsilon))
        delta = _positive_finite("Budget.delta", self.delta)
        if not delta < 1:
            raise ValueError(f"Budget.delta must be in (0, 1), got {delta!r}")
        object.__setattr__(self, "delta", delta)

    def to_dict(self) -> dict[str, float]:
        return {"epsilon": self.epsilon, "delta": self.delta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        _reject_unknown_keys("Budget", data, {"epsilon", "delta"})
        return cls(epsilon=data["epsilon"], delta=data["delta"])


@dataclass(frozen=True)
class PrivacyEvent:
    """One DP release charged to one party at one level; ``count`` identical compositions (e.g. DP-SGD steps).

    ``noise_multiplier`` is sigma / L2 sensitivity (gaussian kinds); ``epsilon`` is the pure epsilon of a
    Laplace release (scale = sensitivity / epsilon); ``sampling_rate`` is the Poisson sampling probability
    of ``subsampled_gaussian`` and must stay 1 for the others (amplification is never assumed silently).
    """

    party: str
    level: Level
    mechanism: Mechanism
    noise_multiplier: float | None = None
    epsilon: float | None = None
    sampling_rate: float = 1.0
    count: int = 1
    step: int | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.party, str) or not self.party:
            raise ValueError(f"PrivacyEvent.party must be a non-empty string, got {self.party!r}")
        if self.level not in LEVELS:
            raise ValueError(f"PrivacyEvent.level must be one of {LEVELS}, got {self.level!r}")
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"PrivacyEvent.mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        if self.mechanism == "laplace":
            if self.epsilon is None:
                raise ValueError("a laplace PrivacyEvent needs epsilon")
            if self.noise_multiplier is not None:
                raise ValueError("a laplace PrivacyEvent takes epsilon, not noise_multiplier")
            object.__setattr__(self, "epsilon", _positive_finite("PrivacyEvent.epsilon", self.epsilon))
        else:
            if self.noise_multiplier is None:
                raise ValueError(f"a {self.mechanism} PrivacyEvent needs noise_multiplier")
            if self.epsilon is not None:
                raise ValueError(f"a {self.mechanism} PrivacyEvent takes noise_multiplier, not epsilon")
            object.__setattr__(
                self, "noise_multiplier", _positive_finite("PrivacyEvent.noise_multiplier", self.noise_multiplier)
            )
        q = _positive_finite("PrivacyEvent.sampling_rate", self.sampling_rate)
        if q > 1:
            raise ValueError(f"PrivacyEvent.sampling_rate must be in (0, 1], got {q!r}")
        if q != 1.0 and self.mechanism != "subsampled_gaussian":
            raise ValueError(f"sampling_rate < 1 is only accounted for subsampled_gaussian, not {self.mechanism}")
        object.__setattr__(self, "sampling_rate", q)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"PrivacyEvent.count must be an int >= 1, got {self.count!r}")
        if self.step is not None and (isinstance(self.step, bool) or not isinstance(self.step, int) or self.step < 0):
            raise ValueError(f"PrivacyEvent.step must be None or an int >= 0, got {self.step!r}")
        if not isinstance(self.note, str):
            raise TypeError(f"PrivacyEvent.note must be a string, got {self.note!r}")

    @property
    def pure(self) -> bool:
        """True for pure-epsilon events, which also compose by plain addition of epsilons."""
        return self.mechanism == "laplace"

    def _key(self) -> tuple[str, float | None, float | None, float]:
        """What determines the privacy loss of one composition (cache key)."""
        return (self.mechanism, self.noise_multiplier, self.epsilon, self.sampling_rate)

    def to_dp_event(self) -> dp_accounting.DpEvent:
        """The dp-accounting event, so any dp-accounting accountant can check our numbers."""
        return dp_accounting.SelfComposedDpEvent(_base_dp_event(*self._key()), self.count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyEvent:
        _reject_unknown_keys("PrivacyEvent", data, {f.name for f in fields(cls)})
        return cls(**dict(data))


def _reject_unknown_keys(what: str, data: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} field(s): {sorted(unknown)}")

