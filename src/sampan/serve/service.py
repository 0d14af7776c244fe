"""From a `[serve]` config to a running service: the backend (horizontal model or vertical session) + uvicorn.

Vertical models here are served in simulation: the partners are rebuilt in this process from the trained
run's stored config (as `sampan score` does) and reached through the in-process transport. A deployment
needs the coordinator to drive the same session over the partners' own streams (`sampan.serve.session`
is transport-agnostic and is tested over the gRPC hub); see docs/deploy.md, "Scoring service".
"""

from __future__ import annotations

import logging
import sys
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
                     max_batch: int = 256) -> VerticalBackend:
    """A vertical run's model, its partners simulated in this process; the session is opened here, once."""
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
    transport = InProcessTransport({name: party.app for name, party in parties.items()})
    session = VerticalScoringSession(parties[job.label_holder], transport, partners=list(job.partners),
                                     model_run=run_id, kind=kind, max_batch=max_batch).open()
    info = ModelInfo(f"{run.name}:{kind}", None, "sampan-vertical-parts", kind, "vertical", threshold, [],
                     "the bank's features (weight x standardised value) and the partners' summed effect")
    return VerticalBackend(session, info)


def build_backend(config: ServeConfig) -> ScoringBackend:
    from sampan.runtime.store import Store

    section = config.section
    store = Store.open(section.store)
    if section.model is not None:
        return horizontal_backend(store, section.model, section.threshold)
    assert section.vertical_run is not None
    return vertical_backend(store, section.vertical_run, section.kind, section.threshold, max_batch=section.max_batch)


def _monitoring_hook(model: str) -> Any:
    """`sampan.monitoring`'s report for the served model, when that module provides one."""
    import importlib

    try:
        module = importlib.import_module("sampan.monitoring")
    except ImportError:
        return None
    report = getattr(module, "service_report", None)
    return (lambda: report(model)) if callable(report) else None


def serve(config: ServeConfig) -> None:
    """Check everything, open the backend, then run uvicorn until interrupted."""
    import uvicorn

    from sampan.serve.app import create_app
    from sampan.serve.auth import uvicorn_tls

    tokens, tls = config.tokens(), config.tls()
    config.check_access(tokens, tls)
    tls_kwargs = uvicorn_tls(tls)
    backend = build_backend(config)
    handler = logging.StreamHandler(sys.stderr)
    access = logging.getLogger("sampan.serve.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    app = create_app(backend, tokens=tokens, mtls=tls is not None and tls.client_ca is not None,
                     monitoring=_monitoring_hook(backend.info.name))
    try:
        uvicorn.run(app, host=config.section.host, port=config.section.port, log_level="warning", access_log=False,
                    **tls_kwargs)
    finally:
        backend.close()
