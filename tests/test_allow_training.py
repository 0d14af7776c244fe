"""The approved training terms of a horizontal job and the per-`fit` check against them (R14-CONSENT2-2)."""

from __future__ import annotations

from typing import Any

import pytest

from sampan.deploy.allow_section import JobRefused
from sampan.deploy.allow_training import check_training, training_terms


def _job(config: dict[str, Any]) -> dict[str, Any]:
    return {"model": "logistic", "training": training_terms(config)[1]}


def test_terms_carry_class_weights_and_the_proximal_term() -> None:
    assert _job({})["training"]["class_weight"] is None and _job({})["training"]["proximal_mu"] == 0.0
    explicit = _job({"training": {"class_weight": {"0": 1.0, "1": 5.0}}})["training"]
    assert explicit["class_weight"] == [1.0, 5.0]
    assert _job({"training": {"class_weight": "balanced"}})["training"]["class_weight"] == "pooled"
    assert _job({"training": {"target_positive_rate": 0.3}})["training"]["class_weight"] == "pooled"
    assert _job({"strategy": {"name": "fedprox", "proximal_mu": 0.5}})["training"]["proximal_mu"] == 0.5


def test_fit_must_train_exactly_as_approved() -> None:
    job = _job({})
    honest = {k: v for k, v in job["training"].items() if k not in ("class_weight", "proximal_mu")}
    check_training("bank", {"model": {"kind": "logistic"}, "train": honest}, job)  # left-out: defaults
    for extra in ({"class_weight": [1.0, 9.0]}, {"proximal_mu": 1.0}, {"dp_noise": 0.0}, {"epochs": 3}):
        with pytest.raises(JobRefused):
            check_training("bank", {"model": {"kind": "logistic"}, "train": {**honest, **extra}}, job)


def test_pooled_weights_accept_a_well_formed_pair_only() -> None:
    job = _job({"training": {"class_weight": "balanced"}})
    train = {**job["training"], "class_weight": [0.6, 2.5]}
    check_training("bank", {"model": {"kind": "logistic"}, "train": train}, job)
    for bad in ([0.0, 1.0], [1.0], "x"):
        with pytest.raises(JobRefused):
            check_training("bank", {"model": {"kind": "logistic"}, "train": {**train, "class_weight": bad}}, job)
