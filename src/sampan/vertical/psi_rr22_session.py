"""One RR22 PSI session's lifetime at a party: its private folder, spu worker and tunnel, its deadline, and the
close that undoes all of it.

Why apart: the handlers in `psi_rr22_party` decide what a session may do; this module only guarantees that
whatever it made goes away, whoever ends it. A session can be ended by the deadline timer (its own thread),
by a close request, or by any failed handler, and those can race; `close` is idempotent under the session's
lock, and a second caller waits for the first, so once any close returns the worker's process group is
killed, the tunnel is shut, the side-file writer has ended and the folder (0700, ids inside) is removed with
the trace spu writes to /tmp. The deadline is the coordinator's timeout capped at the party's own
`MAX_SECONDS` (review R15-RR22-3), and a later arming never pushes an earlier deadline back (R15-PSI2-4).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.vertical.psi_points import PsiError
from sampan.vertical.psi_rr22_local import PREFIX
from sampan.vertical.psi_rr22_tunnel import Tunnel

__all__ = ["MAX_SECONDS", "Rr22Session", "deadline_seconds"]

MAX_SECONDS = 4 * 3600.0  # the party's own longest RR22 session, whatever the coordinator asks
_TRACE = re.compile(rb"Trace has been written to (/tmp/psi_[A-Za-z0-9_-]+\.trace)")
_LOG = "sampan.vertical.psi"


def deadline_seconds(asked: Any, max_seconds: float, party: str) -> float:
    """A session's length: the coordinator's `timeout`, capped at the party's own maximum; a non-finite,
    non-positive or non-numeric one is refused (it would arm a timer that never or always fires)."""
    value = float(asked) if isinstance(asked, (int, float)) and not isinstance(asked, bool) else math.nan
    if not math.isfinite(value) or value <= 0:
        raise PsiError(f"party {party!r}: RR22 timeout {asked!r} is not a positive number of seconds")
    return min(value, max_seconds)


@dataclass
class Rr22Session:
    """One RR22 run with one peer: its private dir, worker process and tunnel; `close` undoes all of it."""

    peer: str
    role: str  # "a" (label holder, spu receiver) or "b" (partner, spu sender)
    mode: str
    session: bytes
    width: int = 0
    directory: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    deadline: float = 0.0
    tunnel: Tunnel | None = None
    timer: threading.Timer | None = None
    located: tuple[np.ndarray, np.ndarray] | None = None  # A's rows and tokens, mapped early, not yet published
    writer: threading.Thread | None = None  # A's side file, written while B writes its own
    written: int = 0  # the id width the side file was written at (0: none yet)
    started: bool = False  # `_launch` has begun (a second start is a replay, refused)
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def folder(self) -> Path:
        """The session's private folder (0700), made once; `party.pid` first, so a sweep can tell its owner."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix=PREFIX))
            (self.directory / "party.pid").write_text(str(os.getpid()), encoding="ascii")
        return self.directory

    def arm(self, seconds: float) -> None:
        """(Re)set the deadline: past it, the session closes itself (worker killed, folder removed)."""
        if self.timer is not None:
            self.timer.cancel()
        self.deadline = time.monotonic() + seconds
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True
        self.timer.start()

    def arm_no_later(self, seconds: float) -> None:
        """Arm `seconds` from now, but never past a deadline already set (A's runs from the offer: R15-PSI2-4)."""
        deadline = time.monotonic() + seconds
        if self.timer is not None:
            deadline = min(deadline, self.deadline)
        self.arm(max(0.0, deadline - time.monotonic()))

    def worker_error(self) -> str:
        """The worker's own last failure line (it never holds ids), else its exit code, for the party's error."""
        assert self.directory is not None
        lines = (self.directory / "worker.log").read_bytes().decode(errors="replace").splitlines()
        failed = [line for line in lines if line.startswith("rr22 worker failed")]
        return failed[-1][:300] if failed else f"exit code {self.process.returncode if self.process else '?'}"

    def close(self) -> None:
        """Idempotent; a second caller (the deadline timer and the close request can race) waits until the
        first has finished, so once any close returns, the worker is dead and the files are gone."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self._teardown()

    def expire(self) -> None:
        """The deadline timer's target: close, and log (never raise in the timer thread) what could not be undone."""
        try:
            self.close()
        except Exception as exc:  # noqa: BLE001 - a timer thread has nobody to report to but the log
            logging.getLogger(_LOG).warning(
                "RR22 session with %r: clean-up at the deadline failed (%s)", self.peer, type(exc).__name__)

    def _teardown(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except OSError:
                pass
            self.process.wait()
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
        if self.tunnel is not None:
            self.tunnel.close()
        if self.directory is not None:
            log = self.directory / "worker.log"
            trace = _TRACE.search(log.read_bytes()) if log.is_file() else None
            if trace is not None:
                try:
                    Path(trace.group(1).decode()).unlink(missing_ok=True)
                except OSError:
                    log_error = f"could not remove spu's trace {trace.group(1).decode()!r}"
                    logging.getLogger(_LOG).warning(log_error)
            if self.writer is not None and self.writer.ident is not None:
                self.writer.join()  # never remove the folder under a writer still filling it
            shutil.rmtree(self.directory, ignore_errors=True)
