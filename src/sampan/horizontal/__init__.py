"""Horizontal FL: the training workflow, party handlers, strategies, aggregators and party-side learners.

May import: sampan.config, sampan.privacy, sampan.report, sampan.models, sampan.metrics, sampan.data, sampan.crypto,
sampan.core, sampan.wire, sampan.errors, sampan.files, sampan.compute (a party's row-block passes). No transport,
runtime or store: parties are reached via `ctx.transport`.
"""

from sampan.horizontal.aggregators import (
    Aggregator,
    CoordinateMedian,
    Krum,
    TrimmedMean,
    WeightedMean,
    make_aggregator,
)
from sampan.horizontal.strategies import FedAdam, FedAvg, FedProx, Strategy, make_strategy
from sampan.models.local_training import TrainConfig, TrainResult, train

__all__ = [
    "Aggregator",
    "CoordinateMedian",
    "FedAdam",
    "FedAvg",
    "FedProx",
    "Krum",
    "Strategy",
    "TrainConfig",
    "TrainResult",
    "TrimmedMean",
    "WeightedMean",
    "make_aggregator",
    "make_strategy",
    "train",
]
