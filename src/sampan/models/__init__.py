"""NumPy models with per-example gradients (logistic regression, MLP, GBDT), local training, model kinds.

May import: sampan.errors, sampan.compute (and numpy/scipy only).
"""

from sampan.models.base import Model, sigmoid
from sampan.models.logistic import LogisticRegression
from sampan.models.mlp import MLP
from sampan.models.registry import model_from_config

__all__ = ["MLP", "LogisticRegression", "Model", "model_from_config", "sigmoid"]
