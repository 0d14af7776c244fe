"""EvaluationRunner: the portal's background evaluations, each in a bounded subprocess (issue 17).

Threat model: the platform under test is an applicant's and may be hostile: it can answer slowly, endlessly or
hugely, name internal addresses for the verifier's party to dial, or make the catalogue's code use memory and CPU
without end. So each evaluation runs in its own process (`python -m sampan.web.portal.worker`, a new session so
the whole process group can be killed), never in the portal's:

* the worker applies RLIMIT_AS (``memory_limit_mb``) and RLIMIT_CPU (``cpu_limit_s``) to itself before it reads
  anything from the platform, and the runner kills the process group at ``time_limit_s`` of wall-clock time (the
  job is then "failed" with an error saying so);
* every outbound connection goes through the egress policy (`sampan.verify.egress`): the API client is pinned to
  the address checked at start, each address the platform names for the verifier's party is checked and pinned
  before the recording proxy relays to it, and an audit hook refuses any other Python socket connect to a refused
  address (see egress.py for what that hook cannot see);
* the job goes in as one JSON object on the worker's stdin (the token never on the command line or in the
  environment), progress comes back as JSON lines on its stdout, each line bounded (never pickle), the worker's
  stderr goes to ``folder/<job_id>.log``; results.json and the report files are written by the worker into
  ``folder/<job_id>/`` (`sampan.verify.report.write_all`, atomically).

Callbacks come from the runner's threads: ``on_progress(dict)`` with the whole progress so far
({"index", "total", "test_id", "done": [{"test_id", "verdict"}]}), then exactly one ``on_done(status,
results_dir, error)`` with status "finished", "failed" or "cancelled". At most ``max_parallel`` workers run at once;
the others wait in order.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("sampan.web.portal.runner")

__all__ = ["EvaluationRunner", "TargetSpec", "ProgressFn", "DoneFn", "MAX_LINE_BYTES"]

ProgressFn = Callable[[dict[str, Any]], None]
DoneFn = Callable[[str, "Path | None", "str | None"], None]
MAX_LINE_BYTES = 256 * 1024  # one progress line; a longer one is a broken worker
_MAX_ERROR = 2000
LOCAL_PLATFORMS = ("weak", "sampan")


@dataclass(frozen=True)
class TargetSpec:
    """The endpoint to evaluate and the egress rules the worker applies.

    ``allow``: the administrator's allow-list (CIDRs / host names), as `EgressPolicy(allow)` takes it;
    ``pinned_ip``: the address the qualification check used (the worker refuses to connect anywhere else for the
    endpoint's host; None: resolve again, still checked); ``local_platform`` ("weak" or "sampan"): the embedded
    mode's in-repo platform, started by the worker itself on its own loopback (then ``url`` and ``token`` are
    not used: Sampan's party kit needs the platform in the verifier's process). ``only``: run just these test ids
    (tests, diagnostics); ``seed``: the evaluation seed (None: drawn)."""

    url: str
    token: str = field(repr=False)
    tls_cert_pem: str | None = None
    allow: tuple[str, ...] = ()
    pinned_ip: str | None = None
    local_platform: str | None = None
    only: tuple[str, ...] = ()
    seed: int | None = None

    def to_job(self, profile: str, out: Path, limits: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.url, "token": self.token, "tls_cert_pem": self.tls_cert_pem, "allow": list(self.allow),
                "pinned_ip": self.pinned_ip, "local_platform": self.local_platform, "only": list(self.only),
                "seed": self.seed, "profile": profile, "out": str(out), **limits}


@dataclass
class _Job:
    job_id: int
    target: TargetSpec
    profile: str
    on_progress: ProgressFn
    on_done: DoneFn
    process: subprocess.Popen[bytes] | None = None
    cancelled: bool = False
    timed_out: bool = False
    thread: threading.Thread | None = None
    progress: dict[str, Any] = field(default_factory=lambda: {"index": 0, "total": 0, "test_id": None, "done": []})
    error: str | None = None
    finished: bool = False


class EvaluationRunner:
    """Runs evaluations in bounded subprocesses (see the module note); results under ``folder/<job_id>/``."""

    def __init__(self, folder: str | Path, *, max_parallel: int = 1, time_limit_s: float = 3600.0,
                 memory_limit_mb: int = 8192, cpu_limit_s: int | None = None, data_dir: str | Path | None = None,
                 python: Sequence[str] | None = None, pdf: bool | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if max_parallel < 1:
            raise ValueError("EvaluationRunner: max_parallel must be at least 1")
        self.time_limit_s, self.memory_limit_mb = float(time_limit_s), int(memory_limit_mb)
        self.cpu_limit_s = int(cpu_limit_s) if cpu_limit_s is not None else int(max(60.0, 2 * self.time_limit_s))
        self.data_dir, self.pdf = data_dir, pdf
        self.python = list(python) if python else [sys.executable]
        self._slots = threading.Semaphore(max_parallel)
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._closed = False

    # ------------------------------------------------------------------ public
    def start(self, job_id: int, target: TargetSpec, profile: str, on_progress: ProgressFn,
              on_done: DoneFn) -> None:
        """Queue ``job_id`` (returns at once; the callbacks report). ValueError for a job already known or a
        local platform the worker cannot start; RuntimeError after shutdown()."""
        if target.local_platform is not None and target.local_platform not in LOCAL_PLATFORMS:
            raise ValueError(f"local_platform must be one of {', '.join(LOCAL_PLATFORMS)}")
        job = _Job(int(job_id), target, profile, on_progress, on_done)
        with self._lock:
            if self._closed:
                raise RuntimeError("the evaluation runner is shut down")
            if job.job_id in self._jobs:
                raise ValueError(f"evaluation {job_id} was already started")
            self._jobs[job.job_id] = job
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"portal-eval-{job_id}", daemon=True)
        job.thread.start()

    def cancel(self, job_id: int) -> None:
        """Stop ``job_id`` (queued or running): its on_done says "cancelled". Unknown or ended jobs: nothing."""
        with self._lock:
            job = self._jobs.get(int(job_id))
            if job is None or job.finished:
                return
            job.cancelled = True
            process = job.process
        if process is not None:
            _kill_group(process)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Cancel every job, wait for their threads (each reports "cancelled"), refuse new ones."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            self.cancel(job.job_id)
        deadline = time.monotonic() + timeout_s
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    def results_dir(self, job_id: int) -> Path:
        return self.folder / str(int(job_id))

    # ------------------------------------------------------------------ one job
    def _run(self, job: _Job) -> None:
        status, results, error = "failed", None, None
        try:
            with self._slots:
                if job.cancelled:
                    status, error = "cancelled", "cancelled before it started"
                else:
                    status, results, error = self._run_worker(job)
        except Exception as exc:  # noqa: BLE001 (the portal must hear of every job's end)
            log.exception("evaluation %s: the runner failed", job.job_id)
            status, error = "failed", f"the runner failed: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                job.finished = True
            try:
                job.on_done(status, results, error)
            except Exception:  # noqa: BLE001 (a broken callback must not kill the runner thread silently)
                log.exception("evaluation %s: on_done raised", job.job_id)

    def _run_worker(self, job: _Job) -> tuple[str, Path | None, str | None]:
        out = self.results_dir(job.job_id)
        limits = {"memory_limit_mb": self.memory_limit_mb, "cpu_limit_s": self.cpu_limit_s,
                  "time_limit_s": self.time_limit_s, "pdf": self.pdf,
                  "data_dir": str(self.data_dir) if self.data_dir is not None else None}
        payload = json.dumps(job.target.to_job(job.profile, out, limits)).encode()
        log_path = self.folder / f"{job.job_id}.log"
        with open(log_path, "wb") as stderr:
            os.chmod(log_path, 0o600)
            process = subprocess.Popen([*self.python, "-m", "sampan.web.portal.worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
                                       close_fds=True, env=_worker_env())
            with self._lock:
                job.process = process
                cancelled = job.cancelled
            if cancelled:
                _kill_group(process)
            timer = threading.Timer(self.time_limit_s, self._time_out, args=(job,))
            timer.daemon = True
            timer.start()
            try:
                assert process.stdin is not None and process.stdout is not None
                try:
                    process.stdin.write(payload)
                    process.stdin.close()
                except OSError:
                    pass  # the worker died at once: its exit status and log say why
                self._emit(job)  # "running" as soon as the worker exists
                final = self._read_lines(job, process.stdout)
                code = process.wait()
            finally:
                timer.cancel()
                _kill_group(process)  # anything the worker left behind (Flower's children...)
        if job.cancelled:
            return "cancelled", None, "cancelled"
        if job.timed_out:
            return "failed", None, (f"the evaluation ran past its time limit of {self.time_limit_s:g} s and was "
                                    "stopped")
        if final is not None and final.get("event") == "finished" and code == 0 and (out / "results.json").is_file():
            return "finished", out, None
        if final is not None and final.get("event") == "failed":
            return "failed", None, _cut(str(final.get("error") or "the evaluation failed"))
        return "failed", None, self._crash_message(code, log_path)

    def _time_out(self, job: _Job) -> None:
        with self._lock:
            job.timed_out = True
            process = job.process
        if process is not None:
            _kill_group(process)

    def _read_lines(self, job: _Job, stream: Any) -> dict[str, Any] | None:
        """Apply each progress line; returns the last "finished"/"failed" event. A line over MAX_LINE_BYTES or
        not JSON is skipped (logged), never trusted."""
        final: dict[str, Any] | None = None
        while True:
            line = stream.readline(MAX_LINE_BYTES + 1)
            if not line:
                return final
            if len(line) > MAX_LINE_BYTES:
                log.warning("evaluation %s: a progress line over %d bytes was dropped", job.job_id, MAX_LINE_BYTES)
                while line and not line.endswith(b"\n"):
                    line = stream.readline(MAX_LINE_BYTES + 1)
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("event")
            if kind in ("finished", "failed"):
                final = event
            elif kind == "progress":
                self._apply(job, event)

    def _apply(self, job: _Job, event: dict[str, Any]) -> None:
        progress = job.progress
        phase = event.get("phase")
        progress["total"] = int(event.get("total") or progress["total"] or 0)
        if phase in ("start", "end"):
            progress["index"] = int(event.get("index") or 0)
            progress["test_id"] = str(event.get("test_id") or "")[:100] or None
        if phase == "end":
            progress["done"].append({"test_id": str(event.get("test_id") or "")[:100],
                                     "verdict": str(event.get("verdict") or "")[:20]})
        if phase == "done":
            progress["index"], progress["test_id"] = progress["total"], None
        self._emit(job)

    def _emit(self, job: _Job) -> None:
        snapshot = {**job.progress, "done": [dict(d) for d in job.progress["done"]]}
        try:
            job.on_progress(snapshot)
        except Exception:  # noqa: BLE001
            log.exception("evaluation %s: on_progress raised", job.job_id)

    def _crash_message(self, code: int | None, log_path: Path) -> str:
        if code is not None and code < 0:
            sig = -code
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            why = {"SIGXCPU": f"it used more than its {self.cpu_limit_s} s of CPU",
                   "SIGKILL": "it was killed (out of memory?)"}.get(name, f"signal {name}")
            return f"the evaluation worker stopped: {why}"
        tail = _tail(log_path)
        if "MemoryError" in tail:
            return f"the evaluation worker ran out of its {self.memory_limit_mb} MB of memory"
        return f"the evaluation worker exited with status {code}" + (f": {tail}" if tail else "")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's whole process group (it leads its own session): the worker and anything it started
    (Flower's processes...), even when the worker itself has already exited."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _worker_env() -> dict[str, str]:
    """The portal's environment minus anything that looks like a secret (the worker needs none of them)."""
    secret = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
    env = {k: v for k, v in os.environ.items() if not any(s in k.upper() for s in secret)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _tail(path: Path, limit: int = 600) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            text = handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return _cut(lines[-1], limit) if lines else ""


def _cut(text: str, limit: int = _MAX_ERROR) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
