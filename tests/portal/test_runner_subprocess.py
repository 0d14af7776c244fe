"""The portal's evaluation runner: a bounded subprocess per evaluation, progress as JSON lines, reports on disk.

The weak platform (the negative control) is evaluated for real: started inside the worker (the embedded mode's
``local_platform``) and served by this test process at a URL the worker must reach through the egress policy.
A job past its wall-clock limit or its memory limit is killed and marked failed with a clear error.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import pytest
from _egress_servers import hostile_server, trickle

from sampan.verify.platforms.weak import WeakBackend
from sampan.verify.results import load_evaluation
from sampan.verify.serve_local import serve_app
from sampan.verify.server import make_benchmark_app
from sampan.web.portal.runner import EvaluationRunner, TargetSpec


class Recorder:
    """The portal's side of the callbacks: every progress dict, and the one on_done call."""

    def __init__(self) -> None:
        self.progress: list[dict[str, Any]] = []
        self.done: list[tuple[str, Path | None, str | None]] = []
        self.ended = threading.Event()
        self.started = threading.Event()

    def on_progress(self, progress: dict[str, Any]) -> None:
        self.progress.append(progress)
        if progress.get("index"):
            self.started.set()

    def on_done(self, status: str, results: Path | None, error: str | None) -> None:
        self.done.append((status, results, error))
        self.ended.set()
        self.started.set()  # a job that ended before its first test wakes a waiter too (it then sees done)

    def wait(self, timeout: float = 120.0) -> tuple[str, Path | None, str | None]:
        assert self.ended.wait(timeout), "the runner never reported the end"
        assert len(self.done) == 1
        return self.done[0]


def start(runner: EvaluationRunner, job_id: int, target: TargetSpec, profile: str = "quick") -> Recorder:
    rec = Recorder()
    runner.start(job_id, target, profile, rec.on_progress, rec.on_done)
    return rec


@pytest.mark.slow
def test_quick_profile_of_the_local_weak_platform_in_a_subprocess(tmp_path: Path) -> None:
    runner = EvaluationRunner(tmp_path / "runs", time_limit_s=300)
    rec = start(runner, 7, TargetSpec(url="", token="", local_platform="weak"))
    status, results, error = rec.wait(280)
    assert (status, error) == ("finished", None)
    assert results == tmp_path / "runs" / "7"
    for name in ("results.json", "report.html", "junit.xml", "manifest.json"):
        assert (results / name).is_file(), name
    evaluation = load_evaluation(results / "results.json")
    assert evaluation.profile == "quick" and evaluation.target.platform == "weak"
    final = rec.progress[-1]
    assert final["total"] == len(evaluation.outcomes) == final["index"]
    assert [d["test_id"] for d in final["done"]] == [o.id for o in evaluation.outcomes]
    assert [d["verdict"] for d in final["done"]] == [o.verdict for o in evaluation.outcomes]
    indices = [p["index"] for p in rec.progress]
    assert indices == sorted(indices) and len(rec.progress) > len(evaluation.outcomes)  # live, not one final dump
    assert "error" not in {o.verdict for o in evaluation.outcomes}, [(o.id, o.message) for o in evaluation.outcomes]
    runner.shutdown()


@pytest.mark.slow
def test_a_remote_endpoint_is_evaluated_through_the_egress_policy(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(16)
    with serve_app(make_benchmark_app(WeakBackend(), token=token)) as server:
        runner = EvaluationRunner(tmp_path / "runs", time_limit_s=120)
        target = TargetSpec(url=server.url, token=token, allow=("127.0.0.1/32",),
                            only=("F-API-VERSION", "S-REPLAY"))
        status, results, error = start(runner, 1, target).wait()
        refused = start(runner, 2, TargetSpec(url=server.url, token=token, only=("F-API-VERSION",))).wait()
    assert (status, error) == ("finished", None) and results is not None
    verdicts = {o.id: o.verdict for o in load_evaluation(results / "results.json").outcomes}
    assert verdicts == {"F-API-VERSION": "pass", "S-REPLAY": "fail"}  # the kit ran through the pinned proxy
    status, results, error = refused
    assert status == "failed" and results is None
    assert error is not None and "loopback" in error and "allow-list" in error
    assert token not in error


def test_a_job_over_its_time_limit_is_killed_and_marked_failed(tmp_path: Path) -> None:
    runner = EvaluationRunner(tmp_path / "runs", time_limit_s=0.5)
    status, results, error = start(runner, 3, TargetSpec(url="", token="", local_platform="weak")).wait()
    assert status == "failed" and results is None
    assert error == "the evaluation ran past its time limit of 0.5 s and was stopped"
    assert not (tmp_path / "runs" / "3" / "results.json").exists()


@pytest.mark.slow
def test_an_endpoint_that_answers_for_ever_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    with hostile_server(trickle) as (port, hits):  # a byte every 0.2 s: each read is "in time", the call never ends
        runner = EvaluationRunner(tmp_path / "runs", time_limit_s=4)
        target = TargetSpec(url=f"http://127.0.0.1:{port}", token="tok", allow=("127.0.0.1/32",))
        status, results, error = start(runner, 9, target).wait()
    assert hits.paths == ["/bench/v1/info"]  # the worker was inside the evaluation, reading the answer
    assert (status, results) == ("failed", None)
    assert error == "the evaluation ran past its time limit of 4 s and was stopped"


def test_a_job_over_its_memory_limit_fails_clearly(tmp_path: Path) -> None:
    runner = EvaluationRunner(tmp_path / "runs", memory_limit_mb=64, time_limit_s=120)
    status, results, error = start(runner, 4, TargetSpec(url="", token="", local_platform="weak")).wait()
    assert status == "failed" and results is None
    assert error is not None and "ran out of its 64 MB of memory" in error


@pytest.mark.slow
def test_a_cancelled_job_says_so(tmp_path: Path) -> None:
    runner = EvaluationRunner(tmp_path / "runs", time_limit_s=120)
    rec = start(runner, 5, TargetSpec(url="", token="", local_platform="weak"))
    assert rec.started.wait(60)
    assert not rec.done, f"the job ended before it could be cancelled: {rec.done}"
    runner.cancel(5)
    status, results, _error = rec.wait()
    assert (status, results) == ("cancelled", None)
    runner.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        runner.start(6, TargetSpec(url="", token=""), "quick", lambda p: None, lambda *a: None)


def test_bad_requests_are_refused_before_anything_runs(tmp_path: Path) -> None:
    runner = EvaluationRunner(tmp_path / "runs")
    with pytest.raises(ValueError, match="local_platform"):
        runner.start(1, TargetSpec(url="", token="", local_platform="flower"), "quick", print, print)
    assert not list((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_the_local_sampan_platform_runs_inside_the_worker_over_tls(tmp_path: Path) -> None:
    """Sampan's in-process party kit needs the platform in the verifier's process: the worker starts it itself."""
    runner = EvaluationRunner(tmp_path / "runs", time_limit_s=280)
    target = TargetSpec(url="", token="", local_platform="sampan", only=("F-TLS", "S-SECAGG-MASKED"))
    status, results, error = start(runner, 8, target).wait(290)
    assert (status, error) == ("finished", None) and results is not None
    outcomes = {o.id: o for o in load_evaluation(results / "results.json").outcomes}
    assert outcomes["F-TLS"].verdict == "pass", outcomes["F-TLS"].message
    assert outcomes["S-SECAGG-MASKED"].verdict == "pass", outcomes["S-SECAGG-MASKED"].message


def _children_running(module: str) -> list[int]:
    """Process ids of this process's children whose command line runs ``module``."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and module.encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_the_token_reaches_the_worker_only_on_its_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    token = "bench-" + secrets.token_hex(16)
    monkeypatch.setenv("SAMPAN_BENCH_TOKEN", token)  # a portal started with a token in its environment
    with hostile_server(trickle) as (port, hits):
        runner = EvaluationRunner(tmp_path / "runs", time_limit_s=60)
        rec = start(runner, 11, TargetSpec(url=f"http://127.0.0.1:{port}", token=token, allow=("127.0.0.1/32",)))
        deadline = time.monotonic() + 30
        while not hits.paths and time.monotonic() < deadline:  # the worker is connected: it has read its job
            time.sleep(0.05)
        workers = _children_running("sampan.web.portal.worker")
        assert hits.paths and workers
        for pid in workers:
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        runner.cancel(11)
        assert rec.wait()[0] == "cancelled"
    assert (tmp_path / "runs" / "11.log").stat().st_mode & 0o077 == 0
    assert token not in (tmp_path / "runs" / "11.log").read_text()
