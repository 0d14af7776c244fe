"""Patch models, aggregation and the threshold (issue 18): a central model on the fingerprint separates
re-sampled / re-compressed patches from pristine ones, models convert from the workflow's array layout, and the
threshold keeps its FPR on held-out real images."""

from __future__ import annotations

import numpy as np
import pytest
from _f2_synthetic import forged, pristine

from sampan.errors import ConfigError, DataError
from sampan.fraud.aggregate import image_score
from sampan.fraud.fingerprint import FEATURE_NAMES, image_features
from sampan.fraud.scorer import (
    LinearPatchModel,
    MlpPatchModel,
    patch_model_from_arrays,
    patch_model_from_dict,
    train_central,
)
from sampan.fraud.threshold import fit_threshold, min_real_images
from sampan.metrics.classification import roc_auc
from sampan.models import MLP, LogisticRegression


def _patches(seed: int, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = np.vstack([image_features(pristine(rng))[0] for _ in range(n_images)])
    fake = np.vstack([image_features(forged(pristine(rng), rng))[0] for _ in range(n_images)])
    return np.vstack([real, fake]), np.r_[np.zeros(len(real)), np.ones(len(fake))]


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = _patches(10, 12)
    Xt, yt = _patches(11, 8)  # other images: held out
    return X, y, Xt, yt


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_central_model_separates_forged_patches(split: tuple[np.ndarray, ...], kind: str) -> None:
    X, y, Xt, yt = split
    model = train_central(X, y, kind, seed=0)  # type: ignore[arg-type]
    assert model.n_features == len(FEATURE_NAMES)
    p = model.fake_probability(Xt)
    assert p.shape == (len(yt),) and ((p >= 0) & (p <= 1)).all()
    assert roc_auc(yt, p) > 0.9


def test_models_match_sampan_models_parameter_layout() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6))
    mean, scale = rng.normal(size=6), rng.uniform(0.5, 2.0, 6)
    logistic = LogisticRegression(6)
    params = rng.normal(size=logistic.n_params)
    linear = patch_model_from_arrays({"kind": "logistic"}, {"params": params, "scaler.mean": mean,
                                                            "scaler.scale": scale})
    assert isinstance(linear, LinearPatchModel)
    np.testing.assert_allclose(linear.fake_probability(X), logistic.predict_proba(params, (X - mean) / scale))
    network = MLP(6, (8, 4))
    mlp_params = network.init_params(rng) + rng.normal(0, 0.1, network.n_params)
    mlp = patch_model_from_arrays({"kind": "mlp", "hidden": [8, 4]}, {"params": mlp_params, "scaler.mean": mean,
                                                                      "scaler.scale": scale})
    assert isinstance(mlp, MlpPatchModel)
    np.testing.assert_allclose(mlp.fake_probability(X), network.predict_proba(mlp_params, (X - mean) / scale))
    for model in (linear, mlp):  # JSON form round trip: the same numbers
        np.testing.assert_array_equal(patch_model_from_dict(model.to_dict()).fake_probability(X),
                                      model.fake_probability(X))
    artifact = {"format": "sampan-artifact-patch-model", "model": {"kind": "mlp", "n_features": 6, "hidden": [8, 4]},
                "params": mlp_params.tolist(), "scaler": {"mean": mean.tolist(), "scale": scale.tolist()}}
    np.testing.assert_array_equal(patch_model_from_dict(artifact).fake_probability(X), mlp.fake_probability(X))


def test_bad_models_are_refused_naming_the_field() -> None:
    good = LinearPatchModel(np.ones(3), 0.0, np.zeros(3), np.ones(3)).to_dict()
    with pytest.raises(ConfigError, match="'scale'"):
        patch_model_from_dict({**good, "scale": [1.0, 0.0, 1.0]})
    with pytest.raises(ConfigError, match="'mean'"):
        patch_model_from_dict({**good, "mean": [0.0, 0.0]})
    with pytest.raises(ConfigError, match="'intercept' is missing"):
        patch_model_from_dict({k: v for k, v in good.items() if k != "intercept"})
    with pytest.raises(ConfigError, match="'kind'"):
        patch_model_from_dict({**good, "kind": "gbdt"})
    with pytest.raises(ConfigError, match="'params'"):
        patch_model_from_arrays({"kind": "mlp", "hidden": [4]}, {"params": np.zeros(3), "scaler.mean": np.zeros(3),
                                                                 "scaler.scale": np.ones(3)})
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        patch_model_from_dict(good).fake_probability(np.zeros((2, 4)))
    with pytest.raises(DataError, match="both present"):
        train_central(np.zeros((4, 3)), np.zeros(4))


def test_aggregation() -> None:
    assert image_score(np.full(10, 0.8)) == pytest.approx(0.8)
    assert image_score(np.array([0.9, 0.1])) == pytest.approx(0.5)
    assert image_score(np.array([0.9, 0.8]), "soft_or") == pytest.approx(0.72)
    one_bad = np.r_[np.full(20, 0.99), 0.01]
    assert image_score(one_bad, "soft_or") < 0.01 < 0.9 < image_score(one_bad, "mean_logit")
    assert image_score(one_bad, "top_logit", k=1) == pytest.approx(0.01)
    assert image_score(one_bad, "top_logit", k=3) < image_score(one_bad, "mean_logit") - 0.1  # less diluted
    assert image_score(np.array([0.5, 0.9]), "top_logit", k=5) == pytest.approx(0.75)  # k > patches: all of them
    assert 0 < image_score(np.array([0.0, 1.0])) < 1  # clipped: finite
    with pytest.raises(ConfigError, match="k must be"):
        image_score(np.ones(2), "top_logit", k=0)
    with pytest.raises(DataError, match="flat"):
        image_score(np.empty(0))
    with pytest.raises(ConfigError, match="mean_logit, top_logit, soft_or"):
        image_score(np.ones(2), "max")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        image_score(np.array([0.5, 1.5]))


def test_threshold_keeps_its_fpr_on_held_out_real_images() -> None:
    rng = np.random.default_rng(5)
    validation, held_out = rng.beta(5, 2, 2000), rng.beta(5, 2, 20000)
    for fpr in (0.1, 0.01):
        threshold = fit_threshold(validation, fpr)
        assert np.mean(validation < threshold) <= fpr
        assert abs(np.mean(held_out < threshold) - fpr) < max(0.3 * fpr, 0.006)


def test_threshold_needs_enough_real_images() -> None:
    assert min_real_images(0.1) == 10 and min_real_images(0.01) == 100 and min_real_images(0.3) == 4
    with pytest.raises(DataError, match="needs at least 100 real validation images, got 99"):
        fit_threshold(np.linspace(0, 1, 99), 0.01)
    assert fit_threshold(np.linspace(0, 1, 10), 0.1) == pytest.approx(1 / 9)  # 1 of 10 below it
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="fpr"):
            fit_threshold(np.ones(10), bad)
