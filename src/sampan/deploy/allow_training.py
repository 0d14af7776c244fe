"""What a horizontal job's `fit` may train with: the approved terms (rounds and every local training setting,
class weights and FedProx's proximal_mu included) and the per-`fit` check against them.

Why (reviews R14-CONSENT-4, R14-CONSENT2-2): a party approves a job trained with certain settings; a `fit`
asking for others (more epochs, a larger learning rate, class weights that make the update a statistic of
one label's rows, a proximal term) releases something the party never approved. Every key of
`TrainConfig` is compared (absent: its default) and unknown keys are refused. Class weights derived from
the pooled positive rate (`balanced`, `target_positive_rate`) are resolved at run time from `describe`, so
the approved terms say "pooled" and any well-formed pair is accepted there (a residual freedom of the
coordinator within weights in (0, 1e4]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sampan.deploy.allow_section import JobRefused
from sampan.models.local_training import TrainConfig

__all__ = ["check_training", "training_terms"]


def training_terms(config: Mapping[str, Any], parsed: Any = None) -> tuple[int, dict[str, Any]]:
    """The approved rounds and local training settings of a horizontal job, spelled as each `fit` request's
    `train` carries them (defaults resolved), so the party checks every `fit` against them and serves at most
    `rounds` rounds (`sampan.deploy.run_rounds`)."""
    from sampan.config.sections import RunSection, TrainingSection

    if parsed is not None:
        rounds, t = int(parsed.run.rounds), parsed.training
        values = {"local_epochs": t.local_epochs, "local_steps": t.local_steps, "batch_size": t.batch_size,
                  "learning_rate": t.learning_rate, "optimizer": t.optimizer, "momentum": t.momentum, "l2": t.l2}
    else:
        run, raw = config.get("run") or {}, config.get("training") or {}
        rounds = int(run.get("rounds") or RunSection.model_fields["rounds"].default)
        values = {k: raw.get(k, TrainingSection.model_fields[k].default) for k in (
            "local_epochs", "local_steps", "batch_size", "learning_rate", "optimizer", "momentum", "l2")}
    return rounds, {"epochs": int(values["local_epochs"]), "max_steps": values["local_steps"],
                    "batch_size": int(values["batch_size"]), "learning_rate": float(values["learning_rate"]),
                    "optimizer": str(values["optimizer"]), "momentum": float(values["momentum"]),
                    "l2": float(values["l2"]), **_weighting_terms(config, parsed)}


def _weighting_terms(config: Mapping[str, Any], parsed: Any) -> dict[str, Any]:
    """The loss weighting and FedProx term each `fit` trains with (review R14-CONSENT2-2): explicit class weights
    as the pair, weights derived from the pooled positive rate ('balanced', target_positive_rate) as "pooled"
    (resolved at run time from `describe`; any well-formed pair is accepted then), None unweighted."""
    from sampan.models.class_weights import resolve_class_weight

    if parsed is not None:
        weights, target = parsed.training.class_weight, parsed.training.target_positive_rate
        strategy, mu = parsed.strategy.name, parsed.strategy.proximal_mu
    else:
        raw, section = config.get("training") or {}, config.get("strategy") or {}
        weights, target = raw.get("class_weight"), raw.get("target_positive_rate")
        strategy, mu = section.get("name", "fedavg"), section.get("proximal_mu", 0.01)
    if isinstance(weights, Mapping):
        pair = resolve_class_weight(weights, None, None)
        class_weight: Any = [float(w) for w in pair] if pair is not None else None
    else:
        class_weight = "pooled" if weights is not None or target is not None else None
    return {"class_weight": class_weight, "proximal_mu": float(mu) if strategy == "fedprox" else 0.0}


# every setting a `fit` trains with, and its default when the request leaves it out
_TRAIN_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _weight_pair(value: Any) -> Any:
    """A `fit`'s class weights as a list of two finite positive floats, None, or False (malformed)."""
    if value is None:
        return None
    try:
        pair = [float(w) for w in value]
    except (TypeError, ValueError):
        return False
    return pair if len(pair) == 2 and all(0.0 < w <= 1e4 for w in pair) else False


def check_training(party: str, meta: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """A `fit` trains exactly as approved (review R14-CONSENT-4): the job's local training settings and model kind;
    the number of rounds is counted by the agent (`sampan.deploy.run_rounds`)."""
    train = meta.get("train")
    train = train if isinstance(train, Mapping) else {}
    unknown = sorted(str(k) for k in set(train) - set(_TRAIN_DEFAULTS))
    if unknown:
        raise JobRefused(party, "job", f"'fit' asks for training settings {unknown} that no approved job spells")
    terms = job["training"]
    for key, default in _TRAIN_DEFAULTS.items():  # every TrainConfig key (R14-CONSENT2-2), absent = its default
        asked, approved = train.get(key, default), terms.get(key, default)
        if key == "class_weight":
            if approved == "pooled" and _weight_pair(asked) is not False:
                continue  # resolved from the pooled positive rate at run time: any well-formed pair
            asked = _weight_pair(asked)
        if asked != approved:
            raise JobRefused(party, "job", f"'fit' asks for training {key}={train.get(key, default)!r}; the "
                             f"approved job trains with {key}={approved!r}")
    model = meta.get("model")
    kind = model.get("kind") if isinstance(model, Mapping) else None
    if job.get("model") is None:  # R14-CONSENT3-6: a job naming no model approves no model
        raise JobRefused(party, "job", "'fit' in a job whose description names no model kind (nothing to train)")
    if kind != job.get("model"):
        raise JobRefused(party, "job", f"'fit' asks for model {kind!r}; the approved job trains {job.get('model')!r}")
    hidden = model.get("hidden") if isinstance(model, Mapping) else None
    if job.get("hidden") is not None and hidden != job["hidden"]:
        raise JobRefused(party, "job", f"'fit' asks for hidden layers {hidden!r}; the approved job trains "
                         f"{job['hidden']!r}")
