"""From a `[serve]` config to a running service: the backend (horizontal model or vertical session) + uvicorn.

Vertical models: with ``[serve] agent`` (the bank's party.toml) this process is the bank's agent in a
deployment and the coordinator drives the session over the partners' own streams (`sampan.serve.deployed`;
the operator submits a ``serving`` job). Without it, a simulation: the partners are rebuilt in this process
from the trained run's stored config (as `sampan score` does) and reached through the in-process transport.
See docs/deploy.md, "Scoring service".
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sampan.errors import ConfigError
from sampan.serve.backends import HorizontalBackend, ModelInfo, ScoringBackend, VerticalBackend
from sampan.serve.config import ServeConfig

__all__ = ["build_backend", "horizontal_backend", "vertical_backend", "serve"]


def horizontal_backend(store: Any, model: str, threshold: float | None = None) -> HorizontalBackend:
    """A registered horizontal model (``name`` or ``name@version``) scored in this process."""
    from sampan.runtime.scorers import load_scorer

    return HorizontalBackend.from_scorer(load_scorer(store, model), threshold)


def vertical_backend(store: Any, run_id: str, kind: str = "lr", threshold: float | None = None, *,
                     max_batch: int = 256, connect: Callable[[dict[str, Any]], Any] | None = None) -> VerticalBackend:
    """A vertical run's model, its partners simulated in this process; the session is opened here, once.
    ``connect`` makes the transport from the parties' apps (default: in-process; the benchmark passes a
    coordinator hub with party links dialling out)."""
    from sampan.serve.session import VerticalScoringSession
    from sampan.transport.inprocess import InProcessTransport
    from sampan.vertical.capability import simulate_vertical, vertical_party
    from sampan.vertical.job import job_of

    run = store.get_run(run_id)
    if run.workflow != "vertical" or run.status != "completed":
        raise ConfigError(f"[serve] vertical_run: run {run_id!r} is a {run.status} {run.workflow!r} run, not a "
                          "completed vertical run")
    job = job_of(run.config or {})
    if kind not in job.models:
        raise ConfigError(f"[serve] kind: run {run_id!r} trained {list(job.models)}, not {kind!r}")
    parties = {name: vertical_party(setup) for name, setup in simulate_vertical(run.config, 0, registry=store).items()}
    apps = {name: party.app for name, party in parties.items()}
    transport = connect(apps) if connect is not None else InProcessTransport(apps)
    session = VerticalScoringSession(parties[job.label_holder], transport, partners=list(job.partners),
                                     model_run=run_id, kind=kind, max_batch=max_batch).open()
    info = ModelInfo(f"{run.name}:{kind}", None, "sampan-vertical-parts", kind, "vertical", threshold, [],
                     "the bank's features (weight x standardised value) and the partners' summed effect")
    return VerticalBackend(session, info)


def deployed_backend(party_toml: Path, run_id: str, kind: str = "lr", threshold: float | None = None, *,
                     max_batch: int = 256) -> VerticalBackend:
    """A deployed vertical run's model: the bank's agent starts here and dials out; requests are answered once
    the operator's ``serving`` job is open (503 until then)."""
    from sampan.serve.deployed import start_hosted_agent

    session = start_hosted_agent(party_toml, run_id, kind, max_batch)
    info = ModelInfo(f"{run_id}:{kind}", None, "sampan-vertical-parts", kind, "vertical", threshold, [],
                     "the bank's features (weight x standardised value) and the partners' summed effect")
    return VerticalBackend(session, info)  # type: ignore[arg-type]  # (the deployed session's same interface)


def build_backend(config: ServeConfig, store: Any) -> ScoringBackend:
    section = config.section
    if section.model is not None:
        return horizontal_backend(store, section.model, section.threshold)
    assert section.vertical_run is not None
    agent = config.agent()
    if agent is not None:
        return deployed_backend(agent, section.vertical_run, section.kind, section.threshold,
                                max_batch=section.max_batch)
    return vertical_backend(store, section.vertical_run, section.kind, section.threshold, max_batch=section.max_batch)


def monitoring_hooks(store: Any, backend: ScoringBackend) -> tuple[Any, Any]:
    """(report, observe) from `sampan.monitoring` for a horizontal model: the served PDs binned against the
    training reference (bank-local counts) and the drift/backtest/challenger results recorded in the store.
    (None, None) without that module, or for a vertical model (its parts are not one registered model)."""
    import importlib

    try:
        module = importlib.import_module("sampan.monitoring")
    except ImportError:
        return None, None
    info = backend.info
    if info.topology != "horizontal":
        return None, None
    ref = info.name if info.version is None else f"{info.name}@{info.version}"
    try:
        monitor = module.score_monitor(store, ref)
    except Exception as exc:  # a model trained before monitoring references existed: counters only
        logging.getLogger(__name__).warning("model %s: no score-drift reference (%s)", ref, exc)
        monitor = None

    def report() -> dict[str, Any]:
        out = dict(module.service_report(ref, store))
        if monitor is not None:
            out["served_scores"] = monitor.snapshot()
        return out
    return report, (monitor.observe if monitor is not None else None)


_CONFIG_ENV = "SAMPAN_SERVE_CONFIG"


def build_app(config: ServeConfig) -> Any:
    """The checked config's app: its backend opened (a vertical session too), tokens and mTLS flag set."""
    from sampan.runtime.store import Store
    from sampan.serve.app import create_app

    tokens, tls = config.tokens(), config.tls()
    config.check_access(tokens, tls)
    store = Store.open(config.section.store)
    backend = build_backend(config, store)
    report, observe = monitoring_hooks(store, backend)
    return create_app(backend, tokens=tokens, mtls=tls is not None and tls.client_ca is not None,
                      monitoring=report, observe=observe, monitor_tokens=config.monitor_tokens(),
                      monitor_every=config.section.monitor_every, max_body_bytes=config.section.max_body_bytes)


def app_from_environment() -> Any:
    """uvicorn's factory in each worker process: every worker builds its own backend from the same config."""
    from sampan.serve.config import load_serve_config

    return build_app(load_serve_config(Path(os.environ[_CONFIG_ENV])))


def serve(config: ServeConfig) -> None:
    """Check everything, open the backend (in each worker), then run uvicorn until interrupted."""
    import uvicorn

    from sampan.serve.auth import uvicorn_tls

    config.check_access(config.tokens(), config.tls())
    tls_kwargs = uvicorn_tls(config.tls())
    access = logging.getLogger("sampan.serve.access")
    access.addHandler(logging.StreamHandler(sys.stderr))
    access.setLevel(logging.INFO)
    section = config.section
    common: dict[str, Any] = {"host": section.host, "port": section.port, "log_level": "warning",
                              "access_log": False, **tls_kwargs}
    if section.workers > 1:
        os.environ[_CONFIG_ENV] = config.source
        uvicorn.run("sampan.serve.service:app_from_environment", factory=True, workers=section.workers, **common)
    else:
        uvicorn.run(build_app(config), **common)
