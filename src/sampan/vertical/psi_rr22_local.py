"""Which local process holds a loopback TCP socket: the RR22 tunnel relays only its own spu worker's connections.

Why: the tunnel's listener and spu's link both sit on 127.0.0.1, where any local process (another user of the
party host included) can connect or bind first (review R15-RR22-4). spu's brpc link cannot present a token, so
the tunnel asks the kernel instead: a socket's inode in `/proc/net/tcp` must be one of the worker's open file
descriptors (`/proc/<pid>/fd`). Linux only, as spu itself is; elsewhere nothing is owned, so nothing is relayed.
Also here: `sweep_stale`, which removes the private folders of this user's dead parties (review R15-RR22-7).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["PREFIX", "connection_owned_by", "listener_owned_by", "sweep_stale"]

_LISTEN = "0A"
PREFIX = "sampan-rr22-"  # a party's private RR22 folder in the temp dir
_UNKNOWN_KEEP = 4 * 3600.0  # seconds a folder with no readable party.pid is kept (it may be being created)


def _loopback(port: int) -> str:
    """127.0.0.1:port as /proc/net/tcp writes it (address little-endian hex, port big-endian hex)."""
    return f"0100007F:{port:04X}"


def _sockets(pid: int) -> set[int]:
    """Socket inodes among the process's open file descriptors (empty if it is gone or not ours)."""
    inodes: set[int] = set()
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _rows() -> list[tuple[str, str, str, int]]:
    """(local, remote, state, inode) of every IPv4 TCP socket of this network namespace."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return []
    rows = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 10:
            rows.append((parts[1], parts[2], parts[3], int(parts[9])))
    return rows


def connection_owned_by(pid: int | None, client_port: int, server_port: int) -> bool:
    """True iff the loopback connection from `client_port` to our `server_port` was opened by process `pid`."""
    if pid is None:
        return False
    local, remote = _loopback(client_port), _loopback(server_port)
    inodes = {inode for lo, re, _, inode in _rows() if lo == local and re == remote and inode}
    return bool(inodes) and inodes <= _sockets(pid)


def listener_owned_by(pid: int | None, port: int) -> bool:
    """True iff the socket listening on 127.0.0.1:`port` belongs to process `pid` (not a squatter)."""
    if pid is None:
        return False
    local = _loopback(port)
    inodes = {inode for lo, _, state, inode in _rows() if lo == local and state == _LISTEN and inode}
    return bool(inodes) and inodes <= _sockets(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def sweep_stale(root: str | None = None) -> list[Path]:
    """Remove this user's `sampan-rr22-*` folders whose party process is gone (their `party.pid` names it);
    a party host that rebooted or a party that was killed left them, with every id in them."""
    removed: list[Path] = []
    base = Path(root or tempfile.gettempdir())
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except OSError:
        return removed
    for folder in candidates:
        try:
            if folder.stat().st_uid != os.getuid():
                continue
            text = (folder / "party.pid").read_text() if (folder / "party.pid").is_file() else ""
        except OSError:
            continue
        owner = int(text) if text.strip().isdigit() else None
        if owner is not None and _alive(owner):
            continue
        if owner is None and folder.stat().st_mtime > time.time() - _UNKNOWN_KEEP:
            continue  # a folder being created right now (pid not written yet) or of an unknown writer: keep
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
