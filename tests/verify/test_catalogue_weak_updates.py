"""Negative controls for replayed and bad updates: the weak platform (no replay checks, no update checks) fails
the replay and malformed-update tests. It stops a job with a clear error naming the party whose
update is 1000x too long, which S-OVERSIZED's rule accepts (availability recorded): that test's negative controls
are in test_catalogue_controls.py (a platform that takes any body; a model exported with the bad update)."""

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


def test_update_tests_catch_the_weak_platforms_flaws(weak_url: str) -> None:
    only = ["S-REPLAY", "S-MALFORMED", "S-OVERSIZED"]
    out = _verdicts(weak_url, only)
    expected = {**dict.fromkeys(only, "fail"), "S-OVERSIZED": "pass"}
    assert {k: v.verdict for k, v in out.items()} == expected, {k: (v.verdict, v.message) for k, v in out.items()}
    nan = out["S-MALFORMED"].evidence["nan_update"]
    # the weak platform either exports a poisoned model or dies with an error that names no party: both fail
    assert not nan["healthy"] and nan["outcome"] in ("the bad update reached the model",
                                                     "the job stopped without an error naming the offending party")
    long = out["S-OVERSIZED"].evidence["update_x1000"]
    assert long["error_names_party"] and long["availability"] == "one party can stop the job"
    assert long["model_export_status"] != 200
