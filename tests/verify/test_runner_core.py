"""The runner isolates tests: an exception or an overrun is that test's verdict "error", never the run's end;
capability gaps are "skip"; progress events come in order; a whole evaluation runs against a fake platform."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sampan.verify.catalogue.base import Context, NotApplicable, Result, Test
from sampan.verify.catalogue.data import make_bench_data
from sampan.verify.progress import collect_progress
from sampan.verify.results import Evaluation
from sampan.verify.runner import run_test

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ALL = frozenset({"quick", "standard", "full"})


@pytest.fixture(scope="module")
def data() -> Any:
    if not (SHARED / "german_credit").is_dir():
        pytest.skip("shared public datasets (../shared/data) not found")
    return make_bench_data(11, "german", SHARED)


def _ctx(data: Any, capabilities: tuple[str, ...] = ("horizontal",), kit: str | None = None) -> Context:
    return Context(api=None, info={"capabilities": list(capabilities), "claims": {}},  # type: ignore[arg-type]
                   data=data, profile="quick", kit=kit)


def _test(test_id: str, body: Any, **kw: Any) -> Test:
    return Test(test_id, f"title {test_id}", "functional", ALL, body, **kw)


def test_verdicts_and_isolation(data: Any) -> None:
    def boom(ctx: Context) -> Result:
        raise RuntimeError("the platform exploded")

    def fine(ctx: Context) -> Result:
        return Result("pass", "ok", figures={"x": 1.0}, evidence={"e": [1, 2]})

    def not_here(ctx: Context) -> Result:
        raise NotApplicable("no vertical rows")

    ctx = _ctx(data)
    out = run_test(_test("T-BOOM", boom), ctx)
    assert out.verdict == "error" and "RuntimeError: the platform exploded" in out.message
    out = run_test(_test("T-FINE", fine, thresholds=("auc_margin_horizontal",)), ctx)
    assert out.verdict == "pass" and out.figures == {"x": 1.0}
    assert out.threshold is not None and out.threshold.source == "pooled baseline"
    assert run_test(_test("T-NA", not_here), ctx).verdict == "skip"
    skipped = run_test(_test("T-CAP", fine, requires=("vertical", "psi")), ctx)
    assert skipped.verdict == "skip" and "vertical, psi" in skipped.message
    nokit = run_test(_test("T-KIT", fine, needs_kit=True), ctx)
    assert nokit.verdict == "skip" and "party kit" in nokit.message


def test_time_bound_sets_the_tests_stop_flag(data: Any) -> None:
    seen: dict[str, threading.Event] = {}

    def slow(ctx: Context) -> Result:
        seen["stop"] = ctx.stop
        ctx.stop.wait(30)
        return Result("pass")

    start = time.monotonic()
    out = run_test(_test("T-SLOW", slow, timeout_s=0.3), _ctx(data))
    assert out.verdict == "error" and "timed out" in out.message
    assert time.monotonic() - start < 5
    assert seen["stop"].is_set()  # a polling job sees it and cancels


def test_shared_job_is_made_once_and_its_failure_shared(data: Any) -> None:
    ctx = _ctx(data)
    calls: list[int] = []

    def make() -> int:
        calls.append(1)
        raise ValueError("job failed")

    for _ in range(3):
        with pytest.raises(ValueError, match="job failed"):
            ctx.once("job", make)
    assert len(calls) == 1
    assert ctx.once("other", lambda: 42) == 42 and ctx.once("other", lambda: 0) == 42


def test_run_evaluation_against_a_fake_platform(data: Any) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _api_fake_backend import FakeBackend

    from sampan.verify.runner import EvaluationError, Target, run_evaluation
    from sampan.verify.serve_local import serve_app
    from sampan.verify.server import make_benchmark_app

    def info(ctx: Context) -> Result:
        return Result("pass", ctx.info["platform"])

    def crash(ctx: Context) -> Result:
        raise KeyError("missing")

    tests = [_test("T-INFO", info), _test("T-CRASH", crash), _test("T-HANG", lambda c: c.stop.wait(20) and
                                                                          Result("pass"), timeout_s=0.2)]
    events, progress = collect_progress()
    with serve_app(make_benchmark_app(FakeBackend(), token="tok")) as server:
        ev = run_evaluation(Target(server.url, "tok", kit=""), "quick", seed=11, tests=tests, progress=progress,
                            data_dir=SHARED)
        with pytest.raises(EvaluationError, match="401"):
            run_evaluation(Target(server.url, "wrong"), "quick", tests=tests, data_dir=SHARED)
    assert [o.verdict for o in ev.outcomes] == ["pass", "error", "error"]
    assert events[0].phase == "setup" and events[0].message
    assert [(e.phase, e.test_id, e.index) for e in events if e.phase not in ("done", "setup")] == [
        ("start", "T-INFO", 1), ("end", "T-INFO", 1), ("start", "T-CRASH", 2), ("end", "T-CRASH", 2),
        ("start", "T-HANG", 3), ("end", "T-HANG", 3)]
    assert events[-1].phase == "done" and all(e.total == 3 for e in events)
    assert ev.manifest["seed"] == 11 and ev.manifest["draws"] == data.draws()
    assert ev.manifest["tests"] == ["T-INFO", "T-CRASH", "T-HANG"]
    again = Evaluation.from_json(ev.to_json())  # the runner's output is valid results JSON
    assert again.counts() == {"pass": 1, "fail": 0, "skip": 0, "error": 2}


def test_unreachable_target_is_one_clear_error() -> None:
    from sampan.verify.runner import EvaluationError, Target, run_evaluation

    with pytest.raises(EvaluationError, match="cannot reach"):
        run_evaluation(Target("http://127.0.0.1:9", "tok"), "quick", tests=[])
