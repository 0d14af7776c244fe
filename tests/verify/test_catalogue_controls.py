"""Negative controls the in-repo platforms cannot give: a platform that lets anyone in fails S-ACCESS, and one
that accepts any request fails F-LIFECYCLE/F-REGISTRATION's error-code checks (a stub API answering 200 to all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sampan.verify.catalogue import functional, security_wire
from sampan.verify.catalogue.base import Context
from sampan.verify.catalogue.data import make_bench_data
from sampan.verify.catalogue.http import Reply

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


class OpenDoor:
    """An API that accepts everything: every call 200 with ids, every job instantly succeeded."""

    url = "http://127.0.0.1:9"
    calls: list[tuple[str, str, Any]]

    def __init__(self) -> None:
        self.calls = []

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        self.calls.append((method, path, kw.get("token", "")))
        return Reply(200, {"project_id": "p1", "job_id": "j1", "state": "succeeded", "round": 1, "rounds": 1},
                     {"x-bench-api-version": "1.0"})

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        return self.call(method, path, body).body


def _ctx() -> Context:
    return Context(api=OpenDoor(), info={"capabilities": ["horizontal"], "claims": {}},  # type: ignore[arg-type]
                   data=make_bench_data(4, "german", SHARED), profile="quick")


def test_access_fails_on_an_open_door() -> None:
    ctx = _ctx()
    result = security_wire.access(ctx)
    assert result.verdict == "fail"
    assert sum(not c["ok"] for c in result.evidence["checks"]) == len(result.evidence["checks"])
    assert any(token is None for _, _, token in ctx.api.calls)  # the no-token calls were really made


def test_error_code_checks_fail_on_a_platform_that_accepts_anything() -> None:
    assert functional.registration(_ctx()).verdict == "fail"
    assert functional.api_version(_ctx()).verdict == "fail"  # unknown path answered 200; /info not a PlatformInfo
