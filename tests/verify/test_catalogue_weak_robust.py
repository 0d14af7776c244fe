"""Negative controls for bad parties: the weak platform's plain FedAvg lets one Byzantine party of five (sign flip,
scaling, ALIE) wreck the model and one model-replacement party of five plant a backdoor."""

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


def test_robustness_tests_catch_the_weak_platforms_flaws(weak_url: str) -> None:
    only = ["S-BYZANTINE", "S-BACKDOOR"]
    out = _verdicts(weak_url, only)
    assert {k: v.verdict for k, v in out.items()} == dict.fromkeys(only, "fail"), \
        {k: (v.verdict, v.message) for k, v in out.items()}
    assert out["S-BACKDOOR"].figures["attack_success_rate"] > 0.5
    assert out["S-BYZANTINE"].evidence["aggregator"].startswith("mean")  # the weak platform has no robust rule
    for o in out.values():  # the same five-party jobs (1 attacker) that a robust platform passes
        assert o.evidence["parties"] == 5 and o.evidence["malicious_parties"] == 1
    # R16B-3: the honest mean carries the verifier's (attacking) party with its row share in every attacked job's
    # first round and in the late-attack job's drawn round (2..5)
    counted = [*out["S-BYZANTINE"].evidence["attacker_counted"], *out["S-BACKDOOR"].evidence["attacker_counted"]]
    assert [c["status"] for c in counted] == ["carried"] * 6, counted
    assert [c["round"] for c in counted][:3] == [1, 1, 1] and 2 <= counted[3]["round"] <= 5, counted
    assert all(abs(c["weight_in_mean"] - c["row_share"]) < 0.05 for c in counted), counted
