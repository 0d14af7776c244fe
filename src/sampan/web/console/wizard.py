"""The job wizard's form -> (run config, per-party datasets and columns, label holder), for every workflow.

Why a pure function: the wizard is a plain HTML form (works without JS), so the whole choice arrives in one POST;
turning it into the run config the control plane hashes is deterministic and tested here, apart from the page.
The form's fields: ``workflow``, ``rounds``, ``model_kind``, ``learning_rate``, ``local_epochs``, ``batch_size``,
``party`` (repeated: the parties whose data the job reads), ``dataset.<party>``, ``columns.<party>.<dataset>``
(repeated), ``label_holder``, ``epsilon``/``delta``/``accountant`` and ``dp1``/``dp2``/``dp3`` (levels),
``extra`` (TOML merged over the rest, for any workflow's own settings). DP1 is ticked by default: a DP job on
the built-in SME tables gets its public bounds filled in (`public_bounds_for`), so the default job standardises
its features under DP and learns. Every bad value raises `Invalid` naming
the form field, so the page shows it next to the field instead of a traceback.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from typing import Any

from sampan.web.errors import Invalid

WORKFLOWS = (("horizontal", "Horizontal training (same features, different customers)"),
             ("vertical", "Vertical training (different features, same customers)"),
             ("evaluation", "Evaluation of a registered model"),
             ("scoring", "Joint scoring"),
             ("synthesis", "Synthetic data"),
             ("checks", "Checks before training (schema, overlap, balance, drift)"))
MODEL_KINDS = (("logistic", "Logistic regression"), ("mlp", "Small neural network (MLP)"),
               ("gbdt", "Gradient-boosted trees"))
ACCOUNTANTS = (("rdp", "RDP"), ("pld", "PLD"))


def _values(form: Mapping[str, Any], key: str) -> list[str]:
    value = form.get(key)
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _number(form: Mapping[str, Any], key: str, kind: type, default: Any, low: float, high: float) -> Any:
    raw = str(form.get(key, "") or "").strip()
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise Invalid(f"{key} must be a {'whole ' if kind is int else ''}number, not {raw!r}", key) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise Invalid(f"{key} must be between {low:g} and {high:g}", key)
    return value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def build_job(form: Mapping[str, Any], name: str) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(run config, {party: {dataset, columns}}, label holder) from the wizard's form."""
    workflow = str(form.get("workflow", "horizontal"))
    if workflow not in dict(WORKFLOWS):
        raise Invalid(f"workflow must be one of {', '.join(dict(WORKFLOWS))}", "workflow")
    parties = list(dict.fromkeys(_values(form, "party")))
    if not parties:
        raise Invalid("choose at least one party whose data the job reads", "party")
    datasets: dict[str, Any] = {}
    for party in parties:
        dataset = str(form.get(f"dataset.{party}", "")).strip()
        if not dataset:
            raise Invalid(f"choose {party}'s dataset", f"dataset.{party}")
        columns = _values(form, f"columns.{party}.{dataset}")
        if not columns:
            raise Invalid(f"choose the columns the job reads from {party}'s {dataset}", f"columns.{party}")
        datasets[party] = {"dataset": dataset, "columns": columns}
    label_holder = str(form.get("label_holder", "")).strip() or None
    rounds = _number(form, "rounds", int, 10, 1, 10_000)
    config: dict[str, Any] = {"run": {"name": name, "workflow": workflow, "rounds": rounds},
                              "deploy": {"parties": parties}}
    if workflow == "vertical":
        if label_holder is None:
            raise Invalid("a vertical job needs a label holder", "label_holder")
        config["vertical"] = {"label_holder": label_holder, "models": ["lr"],
                              "lr": {"epochs": rounds, "learning_rate": _number(form, "learning_rate", float, 0.2,
                                                                                1e-6, 10.0),
                                     "batch_size": _number(form, "batch_size", int, 512, 1, 1_000_000)}}
        del config["run"]["rounds"]
    elif workflow in ("horizontal", "evaluation"):
        kind = str(form.get("model_kind", "logistic"))
        if kind not in dict(MODEL_KINDS):
            raise Invalid(f"model_kind must be one of {', '.join(dict(MODEL_KINDS))}", "model_kind")
        config["model"] = {"kind": kind}
        config["training"] = {"local_epochs": _number(form, "local_epochs", int, 1, 1, 1000),
                              "batch_size": _number(form, "batch_size", int, 64, 1, 1_000_000),
                              "learning_rate": _number(form, "learning_rate", float, 0.1, 1e-6, 10.0)}
        config["strategy"] = {"name": "fedavg"}
    epsilon = _number(form, "epsilon", float, None, 1e-6, 1e6)
    if epsilon is not None:
        privacy: dict[str, Any] = {"epsilon": epsilon, "delta": _number(form, "delta", float, 1e-5, 1e-12, 0.1),
                                   "accountant": str(form.get("accountant", "rdp"))}
        if privacy["accountant"] not in dict(ACCOUNTANTS):
            raise Invalid("accountant must be rdp or pld", "accountant")
        levels = [level for level in ("dp1", "dp2", "dp3") if form.get(level)]
        if not levels:
            raise Invalid("a privacy budget needs at least one level (DP1, DP2 or DP3)", "dp2")
        for level in levels:  # never an empty table: the approval spec counts a level only when its section says so
            privacy[level] = {"noise_multiplier": "auto"}
        if "dp1" not in levels and workflow in ("horizontal", "evaluation"):
            # exact standardisation statistics would be an uncharged release; only DP1 may noise and charge them
            config["data"] = {"standardize": False}
        if "dp3" in levels:
            config.setdefault("strategy", {})["aggregator"] = "mean"
        config["privacy"] = privacy
    extra_text = str(form.get("extra", "") or "").strip()
    if extra_text:
        try:
            extra = tomllib.loads(extra_text)
        except tomllib.TOMLDecodeError as exc:
            raise Invalid(f"the extra settings are not valid TOML: {exc}", "extra") from None
        config = _merge(config, extra)
    dp1 = (config.get("privacy") or {}).get("dp1")
    if isinstance(dp1, dict) and not dp1.get("bounds"):
        known = public_bounds_for(datasets)
        if known is None:
            raise Invalid("DP1 needs public bounds per feature: add [privacy.dp1] bounds = {...} to the extra "
                          "settings", "dp1")
        dp1["bounds"] = known
    return config, datasets, label_holder


def public_bounds_for(datasets: Mapping[str, Any]) -> dict[str, list[float]] | None:
    """DP1's clipping ranges when every column the job reads is a column of the built-in SME bank schema, whose
    ranges are public (fixed by the generator's documented design, `PUBLIC_FEATURE_BOUNDS`, never read off data);
    None for any other column, since only the data owner can say what range is public for it.

    Why here: without DP1 a DP job must train on unstandardised features (exact standardisation statistics would
    be an uncharged release), and DP-SGD on raw ranges of 0-120 learns next to nothing (AUC about 0.5 on the
    console's SME data); with DP1 from these bounds the wizard's default job learns (tests/test_console_wizard.py).
    """
    from sampan.data.consortium import BANK_SCHEMA, PUBLIC_FEATURE_BOUNDS

    sme_columns = {f.name for f in BANK_SCHEMA.features}
    columns = {c for d in datasets.values() for c in d.get("columns", ())}
    if not columns or not columns <= sme_columns:
        return None
    return {name: [float(low), float(high)] for name, (low, high) in PUBLIC_FEATURE_BOUNDS.items()}
