"""Starting Flower workers (flower_worker.py) in Flower's own venv and reading their JSON-line channel.

flwr 1.42 pins fastapi < 0.139, protobuf 6, typer < 0.21 and uvicorn < 0.50, all below what Sampan's venv holds,
so Flower lives in `.venv-flower` (tools/install_flower.sh) and runs only as a subprocess. Each worker gets a pipe
for its events (and, for the verifier's party, a second pipe for the adapter's replies); its own log goes to a file
in the job's private folder, so an error can quote its last lines. Workers run in their own session and are killed
by their process id when a job ends, fails or is cancelled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sampan.errors import ConfigError
from sampan.files import atomic_write_bytes

WORKER = Path(__file__).with_name("flower_worker.py")
_REPO = Path(__file__).resolve().parents[4]


class FlowerMissing(ConfigError):
    """Flower's venv is not installed (says how to install it)."""


def flower_python() -> Path:
    """The Python of Flower's venv: $SAMPAN_FLOWER_PYTHON, else .venv-flower at the repository root."""
    configured = os.environ.get("SAMPAN_FLOWER_PYTHON")
    path = Path(configured) if configured else _REPO / ".venv-flower" / "bin" / "python"
    if not path.is_file():
        raise FlowerMissing(f"Flower's Python {path} is not there: run tools/install_flower.sh (or `make "
                            ".venv-flower/.installed`), or set SAMPAN_FLOWER_PYTHON to a Python with flwr==1.42.0")
    return path


def flower_version() -> str:
    """flwr's version in Flower's venv ("unknown" when it cannot be read)."""
    try:
        out = subprocess.run([str(flower_python()), "-c", "import importlib.metadata as m; print(m.version('flwr'))"],
                             capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError, FlowerMissing):
        return "unknown"
    return out.stdout.strip() or "unknown"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (Flower's legacy server takes an address, not a socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_json(path: Path, value: Any) -> Path:
    """A private JSON file (the job folder is private too): specs and tables handed to a worker."""
    return atomic_write_bytes(path, json.dumps(value).encode("utf-8"), mode=0o600)


def write_text(path: Path, text: str) -> Path:
    """A private text file (a PEM: the server key among them)."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=0o600)


class Worker:
    """One running flower_worker.py: its events as dicts, an optional reply pipe, and a kill by process id."""

    def __init__(self, mode: str, spec: dict[str, Any], folder: Path, name: str, *, replies: bool = False) -> None:
        spec_path = write_json(folder / f"{name}.spec.json", spec)
        self.log_path = folder / f"{name}.log"
        out_r, out_w = os.pipe()
        fds = [out_w]
        args = [str(flower_python()), str(WORKER), mode, "--spec", str(spec_path), "--channel", str(out_w)]
        in_r = in_w = -1
        if replies:
            in_r, in_w = os.pipe()
            fds.append(in_r)
            args += ["--in", str(in_r)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "FLWR_HOME": str(folder),
               "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1", "GRPC_VERBOSITY": "ERROR"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, pass_fds=fds, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=folder)
        os.close(out_w)
        self._events = os.fdopen(out_r, "r", encoding="utf-8")
        self._replies = None
        if replies:
            os.close(in_r)
            self._replies = os.fdopen(in_w, "w", encoding="utf-8", buffering=1)

    def events(self) -> Iterator[dict[str, Any]]:
        """Each event the worker sends, until it exits (blocking; run in a thread)."""
        try:
            for line in self._events:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    yield event
        finally:
            self._events.close()

    def reply(self, **value: Any) -> None:
        if self._replies is None:
            raise RuntimeError("this worker takes no replies")
        self._replies.write(json.dumps(value) + "\n")
        self._replies.flush()

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the worker's own log (for an error message)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def kill(self) -> None:
        """Kill the worker and its children (its own session); its event pipe then ends for the reader."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self._replies is not None:
            try:
                self._replies.close()
            except OSError:
                pass


__all__ = ["WORKER", "FlowerMissing", "Worker", "flower_python", "flower_version", "free_port", "write_json",
           "write_text"]
