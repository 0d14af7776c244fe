"""The catalogue against the deliberately weak platform (the negative control): the quick profile runs in
seconds and the honest functional tests pass. The standard-profile security tests against it are in
test_catalogue_weak_wire.py and test_catalogue_weak_leaks.py (slow)."""

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
pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@pytest.fixture(scope="module")
def weak_url() -> Iterator[str]:
    with WeakBackend() as backend, serve_app(make_benchmark_app(backend, token="tok")) as server:
        yield server.url


def _verdicts(url: str, profile: str, only: list[str] | None = None) -> dict[str, Any]:
    ev = run_evaluation(Target(url, "tok"), profile, only=only, data_dir=SHARED)
    return {o.id: o for o in ev.outcomes}


def test_quick_profile(weak_url: str) -> None:
    out = _verdicts(weak_url, "quick")
    verdicts = {k: v.verdict for k, v in out.items()}
    assert verdicts == {
        "F-API-VERSION": "pass", "F-TLS": "fail", "F-LIFECYCLE": "pass", "F-REGISTRATION": "pass",
        "F-AUC-HORIZONTAL": "pass", "P-TIME-TO-AUC": "pass", "P-ROUND-TIME": "pass", "P-BYTES-PER-ROUND": "pass",
        "S-ACCESS": "pass", "S-TLS-NO-CLIENT-CERT": "fail", "S-SECAGG-MASKED": "fail",
    }, {k: (v.verdict, v.message) for k, v in out.items()}
    assert out["S-SECAGG-MASKED"].claim == "secure_aggregation"
    assert out["P-BYTES-PER-ROUND"].figures["bytes_per_round"] > 0  # measured at the wire, by the proxy
