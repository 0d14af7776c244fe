"""Differential privacy and secure aggregation: mechanisms, DP-SGD (DP2), DP3, the ledger and composition,
SecAgg+, privacy mods.

May import: sampan.models, sampan.metrics, sampan.data, sampan.crypto, sampan.core, sampan.wire, sampan.errors,
sampan.files (and numpy, scipy, dp-accounting). Knows nothing about transports, protocols or the store.
"""

from sampan.privacy.discrete_mechanisms import DiscreteGaussianMechanism, DiscreteLaplaceMechanism
from sampan.privacy.dp3 import DP3Aggregation, DP3Config, clip_update, party_release
from sampan.privacy.dpsgd import DPSGDConfig, DPSGDResult, dp_sgd_train, planned_steps
from sampan.privacy.ledger import Budget, BudgetExceeded, Ledger, PrivacyEvent
from sampan.privacy.mechanisms import GaussianMechanism, LaplaceMechanism
from sampan.privacy.randomness import secure_generator, seeded_generator

__all__ = [
    "Budget", "BudgetExceeded", "DP3Aggregation", "DP3Config", "DPSGDConfig", "DPSGDResult",
    "DiscreteGaussianMechanism", "DiscreteLaplaceMechanism", "GaussianMechanism", "LaplaceMechanism", "Ledger",
    "PrivacyEvent", "clip_update", "dp_sgd_train", "party_release", "planned_steps", "secure_generator",
    "seeded_generator",
]
