"""Negative controls for the certificate checks: the weak platform checks no client certificate, so a party with
an expired, foreign-CA or revoked certificate is served (S-TLS-NO-CLIENT-CERT runs in the quick profile)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from sampan.verify.platforms.weak import WeakBackend  # noqa: E402
from sampan.verify.runner import Target, run_evaluation  # noqa: E402
from sampan.verify.serve_local import serve_app  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.fixture(scope="module")
def weak_url() -> Iterator[str]:
    with WeakBackend() as backend, serve_app(make_benchmark_app(backend, token="tok")) as server:
        yield server.url


def _verdicts(url: str, only: list[str]) -> dict[str, Any]:
    ev = run_evaluation(Target(url, "tok"), "standard", only=only, data_dir=SHARED)
    return {o.id: o for o in ev.outcomes}


def test_tls_tests_catch_the_weak_platforms_flaws(weak_url: str) -> None:
    only = ["S-TLS-EXPIRED", "S-TLS-WRONG-CA", "S-TLS-REVOKED"]
    out = _verdicts(weak_url, only)
    assert {k: v.verdict for k, v in out.items()} == dict.fromkeys(only, "fail"), \
        {k: (v.verdict, v.message) for k, v in out.items()}
