"""Per-patch scorers: a patch's fingerprint -> its probability of being fake (label 1).

The models are `sampan.models`' logistic regression and MLP, with their flat parameter layout and the
standardisation (`mean`, `scale`) that the horizontal workflow stores in a model artifact (``params`` and
``scaler.mean``/``scaler.scale``): a federated artifact converts to a patch model with `patch_model_from_arrays`,
and `train_central` trains the same model kinds with the same local trainer (`sampan.models.local_training`),
so a central baseline differs from the federated model only by federation.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from sampan.errors import ConfigError, DataError
from sampan.models import MLP, LogisticRegression, sigmoid
from sampan.models.local_training import TrainConfig, train

__all__ = ["LinearPatchModel", "MlpPatchModel", "PatchModel", "patch_model_from_arrays", "patch_model_from_dict",
           "standardiser", "train_central"]


@runtime_checkable
class PatchModel(Protocol):
    """What the detector needs of a patch model."""

    n_features: int

    def fake_probability(self, X: np.ndarray) -> np.ndarray:
        """P(fake) per row of raw (unstandardised) patch features, shape (N,)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able description (lists of floats), read back by `patch_model_from_dict`."""
        ...


def standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale (a constant column gets scale 1, as in the horizontal workflow's setup stage)."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def _vector(name: str, value: Any, length: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length) or not np.isfinite(arr).all():
        want = f"{length} finite numbers" if length is not None else "a list of finite numbers"
        raise ConfigError(f"patch model field {name!r} must be {want} (got shape {arr.shape})")
    return arr


class _Standardised:
    """Shared part: input checks and standardisation with the training's mean/scale."""

    n_features: int
    mean: np.ndarray
    scale: np.ndarray

    def _init_scaler(self, n_features: int, mean: Any, scale: Any) -> None:
        self.n_features = n_features
        self.mean = _vector("mean", mean, n_features)
        self.scale = _vector("scale", scale, n_features)
        if (self.scale <= 0).any():
            raise ConfigError("patch model field 'scale' must be positive")

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"patch features must be (N, {self.n_features}), got shape {X.shape}")
        return (X - self.mean) / self.scale


class LinearPatchModel(_Standardised):
    """Logistic regression on standardised features: P(fake) = sigmoid(z·coef + intercept)."""

    kind = "logistic"

    def __init__(self, coefficients: Any, intercept: float, mean: Any, scale: Any) -> None:
        coef = _vector("coefficients", coefficients)
        self._init_scaler(coef.shape[0], mean, scale)
        self.coefficients = coef
        if not np.isfinite(intercept):
            raise ConfigError("patch model field 'intercept' must be a finite number")
        self.intercept = float(intercept)

    @classmethod
    def from_params(cls, params: Any, mean: Any, scale: Any) -> LinearPatchModel:
        """From `sampan.models.LogisticRegression`'s flat params [w_1..w_d, b]."""
        flat = _vector("params", params)
        if flat.shape[0] < 2:
            raise ConfigError("patch model field 'params' needs at least one weight and the intercept")
        return cls(flat[:-1], float(flat[-1]), mean, scale)

    def fake_probability(self, X: np.ndarray) -> np.ndarray:
        return sigmoid(self._standardise(X) @ self.coefficients + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "coefficients": self.coefficients.tolist(), "intercept": self.intercept,
                "mean": self.mean.tolist(), "scale": self.scale.tolist()}


class MlpPatchModel(_Standardised):
    """`sampan.models.MLP` (ReLU hidden layers, logistic output) on standardised features."""

    kind = "mlp"

    def __init__(self, params: Any, hidden: Sequence[int], mean: Any, scale: Any) -> None:
        mean_arr = np.asarray(mean, dtype=np.float64)
        n_features = int(mean_arr.shape[0]) if mean_arr.ndim == 1 else 0
        try:
            self.network = MLP(n_features, tuple(int(h) for h in hidden))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"patch model field 'hidden': {exc}") from None
        self._init_scaler(n_features, mean, scale)
        self.params = _vector("params", params, self.network.n_params)
        self.hidden = self.network.hidden

    @classmethod
    def from_params(cls, params: Any, hidden: Sequence[int], mean: Any, scale: Any) -> MlpPatchModel:
        """From `sampan.models.MLP`'s flat params [W1, b1, ..., w_out, b_out]."""
        return cls(params, hidden, mean, scale)

    def fake_probability(self, X: np.ndarray) -> np.ndarray:
        return self.network.predict_proba(self.params, self._standardise(X))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden": list(self.hidden), "params": self.params.tolist(),
                "mean": self.mean.tolist(), "scale": self.scale.tolist()}


def patch_model_from_arrays(model_config: Mapping[str, Any], arrays: Mapping[str, Any]) -> PatchModel:
    """From a model artifact's config (``{"kind": "logistic"|"mlp", "hidden": [...]}``) and arrays (``params``,
    ``scaler.mean``, ``scaler.scale``): the layout the horizontal workflow registers."""
    for key in ("params", "scaler.mean", "scaler.scale"):
        if key not in arrays:
            raise ConfigError(f"model artifact has no array {key!r} (it needs params, scaler.mean, scaler.scale)")
    kind = model_config.get("kind")
    if kind == "logistic":
        return LinearPatchModel.from_params(arrays["params"], arrays["scaler.mean"], arrays["scaler.scale"])
    if kind == "mlp":
        return MlpPatchModel.from_params(arrays["params"], model_config.get("hidden", (32,)), arrays["scaler.mean"],
                                         arrays["scaler.scale"])
    raise ConfigError(f"model artifact kind {kind!r} is not a patch model; expected 'logistic' or 'mlp'")


def patch_model_from_dict(data: Mapping[str, Any]) -> PatchModel:
    """Inverse of ``to_dict``; a missing or bad field raises ConfigError naming it."""
    if not isinstance(data, Mapping):
        raise ConfigError("patch model must be a JSON object")
    if data.get("format") == "sampan-artifact-patch-model":  # `sampan.fraud.patch_models.ArtifactPatchModel`
        return _from_artifact_dict(data)
    kind = data.get("kind")
    needed = {"logistic": ("coefficients", "intercept", "mean", "scale"),
              "mlp": ("hidden", "params", "mean", "scale")}.get(str(kind))
    if needed is None:
        raise ConfigError(f"patch model field 'kind' must be 'logistic' or 'mlp' (got {kind!r})")
    for key in needed:
        if key not in data:
            raise ConfigError(f"patch model field {key!r} is missing")
    try:
        if kind == "logistic":
            return LinearPatchModel(data["coefficients"], float(data["intercept"]), data["mean"], data["scale"])
        return MlpPatchModel(data["params"], data["hidden"], data["mean"], data["scale"])
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"patch model: {exc}") from None


def _from_artifact_dict(data: Mapping[str, Any]) -> PatchModel:
    """The artifact form (``model`` config, flat ``params``, ``scaler`` mean/scale) as the same model here."""
    config, scaler = data.get("model"), data.get("scaler")
    if not isinstance(config, Mapping):
        raise ConfigError("patch model field 'model' must be an object with the model kind")
    if not isinstance(scaler, Mapping) or "mean" not in scaler or "scale" not in scaler:
        raise ConfigError("patch model field 'scaler' must be an object with mean and scale")
    if "params" not in data:
        raise ConfigError("patch model field 'params' is missing")
    arrays = {"params": data["params"], "scaler.mean": scaler["mean"], "scaler.scale": scaler["scale"]}
    try:
        return patch_model_from_arrays(config, arrays)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"patch model: {exc}") from None


def train_central(X: np.ndarray, y: np.ndarray, kind: Literal["logistic", "mlp"] = "logistic",
                  seed: int | None = None, *, hidden: Sequence[int] = (32,),
                  config: TrainConfig | None = None) -> PatchModel:
    """Train on pooled patch features (the central baseline, and tests): standardise, then `sampan.models`'
    trainer (Adam, class-balanced weights by default). ``seed`` only for reproducible tests/benchmarks."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise DataError(f"train_central needs X (N, F) and y (N,), got {X.shape} and {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all() or len(np.unique(y)) < 2:
        raise DataError("train_central needs labels 0 (real) and 1 (fake), both present")
    if not np.isfinite(X).all():
        raise DataError("train_central: patch features must be finite")
    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(128))
    mean, scale = standardiser(X)
    Z = (X - mean) / scale
    n_fake = float(y.sum())
    balance = (len(y) / (2 * (len(y) - n_fake)), len(y) / (2 * n_fake))
    settings = config or TrainConfig(epochs=30, batch_size=64, learning_rate=0.01, optimizer="adam", l2=1e-4,
                                     class_weight=balance)
    if kind == "logistic":
        logistic = LogisticRegression(X.shape[1])
        params = train(logistic, logistic.init_params(rng), Z, y, settings, rng).params
        return LinearPatchModel.from_params(params, mean, scale)
    if kind == "mlp":
        network = MLP(X.shape[1], hidden)
        params = train(network, network.init_params(rng), Z, y, settings, rng).params
        return MlpPatchModel.from_params(params, network.hidden, mean, scale)
    raise ConfigError(f"patch model kind must be 'logistic' or 'mlp' (got {kind!r})")
