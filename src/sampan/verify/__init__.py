"""Sampan verify: tests any FL platform through the vendor-neutral Benchmark API and reports what it found.

The verifier speaks only the Benchmark API (`sampan.verify.api`, served by `server.make_benchmark_app` over a
`backend.PlatformBackend`), runs at least one party itself (a platform's party kit, behind a `proxy.RecordingProxy`
that measures bytes and timing at the wire) and runs the consortium CA (`pki.VerifierCA`). Public names load
lazily so `import sampan.verify` needs neither FastAPI nor httpx.

May import: sampan.deploy, sampan.runtime, sampan.checks, sampan.horizontal, sampan.vertical, sampan.audit,
sampan.config, sampan.privacy, sampan.report, sampan.models, sampan.metrics, sampan.data, sampan.crypto,
sampan.wire, sampan.errors, sampan.files.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "API_VERSION": "sampan.verify.api",
    "PlatformBackend": "sampan.verify.backend",
    "BackendError": "sampan.verify.backend",
    "make_benchmark_app": "sampan.verify.server",
    "BenchmarkClient": "sampan.verify.client",
    "VerifyError": "sampan.verify.client",
    "RecordingProxy": "sampan.verify.proxy",
    "VerifierCA": "sampan.verify.pki",
    "serve_app": "sampan.verify.serve_local",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sampan.verify' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
