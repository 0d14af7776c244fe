"""Horizontal FL: strategies, aggregators and party-side learners.

May import: models, privacy, wire, metrics. Knows nothing about transports.
"""

from sampan.horizontal.aggregators import (
    Aggregator, CoordinateMedian, Krum, TrimmedMean, WeightedMean, make_aggregator,
)
from sampan.models.local_training import TrainConfig, TrainResult, train
from sampan.horizontal.strategies import FedAdam, FedAvg, FedProx, Strategy, make_strategy

__all__ = [
    "Aggregator", "CoordinateMedian", "FedAdam", "FedAvg", "FedProx", "Krum", "Strategy", "TrainConfig",
    "TrainResult", "TrimmedMean", "WeightedMean", "make_aggregator", "make_strategy", "train",
]
