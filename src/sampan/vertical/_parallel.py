"""Fork-based parallel map over fixed-size records, for the CPU-bound steps of PSI.

Why not multiprocessing: X25519 scalar multiplication in `cryptography` holds the GIL, so only
processes help, and `multiprocessing.Pool` pickles tasks and results. Here each worker is a plain
`os.fork()` child that inherits its input (and any secret key) through copy-on-write memory and
writes only raw result bytes back over its own `os.pipe`; nothing is pickled and nothing touches disk.

Work is split into many small chunks handed out through a shared task pipe (each 16-byte task record
is consumed by exactly one reader), so a worker on a busy or slower core simply takes fewer chunks.
Children never return into the caller's stack: they compute, write and `os._exit`.

Caveat: fork copies only the calling thread. If another thread of the process is inside OpenSSL (via
`cryptography`) at that instant, a child may wait forever on a lock it inherited held; a threaded
party server must not run other `cryptography` calls concurrently with a PSI step.
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import struct
import warnings
from collections.abc import Callable

__all__ = ["ParallelError", "default_workers", "map_ranges", "map_records", "INLINE_BELOW"]

INLINE_BELOW = 2000  # below this many items a fork costs more than it saves
CHUNKS_PER_WORKER = 16  # load balancing granularity
MIN_CHUNK = 256  # items; keeps per-chunk syscalls negligible

_TASK = struct.Struct("<Q")  # chunk index; 8 bytes < PIPE_BUF, so each read takes one whole task
_HEAD = struct.Struct("<IBQ")  # task index, status, payload length
_OK, _FAILED = 0, 1
_MAX_TASKS = 256  # 256 * 8 bytes fit the smallest pipe buffer: all tasks are written before forking
_READ = 1 << 20


class ParallelError(RuntimeError):
    """A worker process died or failed; the result would be incomplete."""


def default_workers() -> int:
    """CPUs this process may run on (affinity-aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def map_ranges(fn: Callable[[int, int], bytes], n: int, out_size: int, *,
               workers: int | None = None, inline_below: int = INLINE_BELOW) -> bytes:
    """`fn(0, n)` computed in parallel: `fn(start, stop)` must return `(stop - start) * out_size` bytes.

    The result is reassembled in order, so it equals the inline call byte for byte.
    """
    if n < 0 or out_size <= 0:
        raise ValueError("n must be >= 0 and out_size > 0")
    workers = default_workers() if workers is None else int(workers)
    workers = max(1, min(workers, n))
    if n < inline_below or workers == 1 or not hasattr(os, "fork"):
        return _checked(fn(0, n), n * out_size, "inline")

    n_tasks = min(_MAX_TASKS, workers * CHUNKS_PER_WORKER, max(workers, n // MIN_CHUNK))
    bounds = [n * k // n_tasks for k in range(n_tasks + 1)]
    task_read, task_write = os.pipe()
    try:
        _write_all(task_write, b"".join(_TASK.pack(k) for k in range(n_tasks)))
    finally:
        os.close(task_write)  # readers see EOF once every task is taken
    children: dict[int, int] = {}  # result fd -> pid
    try:
        for _ in range(workers):
            read_fd, write_fd = os.pipe()
            with warnings.catch_warnings():
                # Python >= 3.12 warns about fork in a threaded process; the child only computes and
                # writes to its pipe (no locks, logging or imports), which is fork-safe.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # child
                _child(fn, bounds, task_read, write_fd, [read_fd, *children])
            os.close(write_fd)
            children[read_fd] = pid
        os.close(task_read)
        task_read = -1
        streams = _collect(list(children))
        results: dict[int, bytes] = {}
        for fd, pid in list(children.items()):
            os.close(fd)
            del children[fd]
            _, status = os.waitpid(pid, 0)
            _parse(streams[fd], status, results, bounds, out_size, workers)
        missing = [k for k in range(n_tasks) if k not in results]
        if missing:
            raise ParallelError(f"PSI workers returned {n_tasks - len(missing)} of {n_tasks} chunks")
        return b"".join(results[k] for k in range(n_tasks))
    finally:
        if task_read >= 0:
            os.close(task_read)
        for fd, pid in children.items():  # only on an error path: stop and reap the rest
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            os.close(fd)


def map_records(fn: Callable[[memoryview], bytes], data: bytes | bytearray | memoryview, in_size: int,
                out_size: int, *, workers: int | None = None, inline_below: int = INLINE_BELOW) -> bytes:
    """Apply `fn` to blocks of `in_size`-byte records; `fn(block)` returns `out_size` bytes per record."""
    view = memoryview(data).cast("B")
    if in_size <= 0 or len(view) % in_size:
        raise ValueError(f"data of {len(view)} bytes is not a whole number of {in_size}-byte records")
    return map_ranges(lambda start, stop: fn(view[start * in_size: stop * in_size]),
                      len(view) // in_size, out_size, workers=workers, inline_below=inline_below)


def _checked(result: bytes, expected: int, who: str) -> bytes:
    if len(result) != expected:
        raise ParallelError(f"{who} returned {len(result)} bytes, expected {expected}")
    return result


def _child(fn: Callable[[int, int], bytes], bounds: list[int], task_fd: int, write_fd: int,
           close_fds: list[int]) -> None:
    """Body of a forked worker: take tasks until none are left, write each result, exit."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C kills workers outright
        for fd in close_fds:
            os.close(fd)
        gc.disable()  # avoid touching (and so copying) every inherited page
        while True:
            task = os.read(task_fd, _TASK.size)
            if not task:
                break
            (k,) = _TASK.unpack(task)
            try:
                status, payload = _OK, fn(bounds[k], bounds[k + 1])
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
                status, payload = _FAILED, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:2000]
            _write_all(write_fd, _HEAD.pack(k, status, len(payload)))
            _write_all(write_fd, payload)
            if status == _FAILED:
                break
        code = 0
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(fds: list[int]) -> dict[int, bytes]:
    """Read every worker's pipe to EOF at once (a worker blocks when its pipe is full)."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    with selectors.DefaultSelector() as selector:
        for fd in fds:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = len(fds)
        while open_fds:
            for key, _ in selector.select():
                chunk = os.read(key.fd, _READ)
                if chunk:
                    chunks[key.fd].append(chunk)
                else:
                    selector.unregister(key.fd)
                    open_fds -= 1
    return {fd: b"".join(parts) for fd, parts in chunks.items()}


def _parse(stream: bytes, status: int, results: dict[int, bytes], bounds: list[int], out_size: int,
           workers: int) -> None:
    who = f"a PSI worker (of {workers})"
    if os.WIFSIGNALED(status):
        raise ParallelError(f"{who} was killed by signal {os.WTERMSIG(status)} (out of memory?) "
                            f"before returning its results")
    if os.WEXITSTATUS(status) != 0:
        raise ParallelError(f"{who} exited with status {os.WEXITSTATUS(status)} before returning its results")
    view, pos = memoryview(stream), 0
    while pos < len(view):
        if pos + _HEAD.size > len(view):
            raise ParallelError(f"{who} returned a truncated result")
        k, flag, length = _HEAD.unpack_from(view, pos)
        pos += _HEAD.size
        payload = bytes(view[pos:pos + length])
        pos += length
        if len(payload) != length or k >= len(bounds) - 1:
            raise ParallelError(f"{who} returned a truncated result")
        if flag == _FAILED:
            raise ParallelError(f"{who} failed: {payload.decode('utf-8', 'replace')}")
        results[k] = _checked(payload, (bounds[k + 1] - bounds[k]) * out_size, who)
