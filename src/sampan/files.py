"""Atomic writes (a reader sees the old file/folder or the new one, never a half-written one) and private files.

Private files (keys, stores, pin files, logs) are created 0600 in 0700 folders from the start, never
chmod-ed after the fact, so there is no window in which another local user could open them. They are
opened with O_NOFOLLOW and refused in a world-writable folder (where another user could
have planted a link or a file of their own under the name), and a file another user owns is refused.

`HighWater` keeps monotonic counters (CRL number, issuance-record generation) across restarts, so a
signed but older file put back in place is refused even by a freshly started process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "private_directory",
           "create_exclusive_bytes",
           "private_file", "private_sqlite", "open_private_append", "check_private_mode", "InsecureFileError",
           "PRIVATE_FILE", "PRIVATE_DIR", "HighWater"]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class InsecureFileError(PermissionError):
    """A secret file (key) that other local users can read or write; the message says how to fix it."""


def private_directory(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) 0700; an existing folder that others can enter is tightened
    if this user owns it. Returns the path."""
    target = Path(path)
    if not target.exists():
        target.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        os.chmod(target, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    elif target.is_dir() and stat.S_IMODE(target.stat().st_mode) & 0o077 and target.stat().st_uid == os.getuid():
        os.chmod(target, PRIVATE_DIR)
    return target


def _check_parent(target: Path) -> None:
    """Refuse a folder that any user may write to (/tmp included): they could plant a link or their own file
    there. (A group-writable folder is left to the operator: user-private groups make it common.)"""
    parent = target.parent
    info = parent.stat()
    if stat.S_IMODE(info.st_mode) & 0o002:
        raise InsecureFileError(f"folder {str(parent)!r} of the private file {target.name!r} is writable by other "
                                f"users (mode {stat.S_IMODE(info.st_mode):04o}); use a private folder (chmod 700 "
                                f"{parent})")


def _open_private(target: Path, flags: int) -> int:
    """Open (creating 0600) without following a link; refuse a file owned by another user."""
    _check_parent(target)
    try:
        fd = os.open(target, flags | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
    except OSError as exc:
        if target.is_symlink():
            raise InsecureFileError(f"private file {str(target)!r} is a symbolic link; refusing to follow it") from None
        raise exc
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or not stat.S_ISREG(info.st_mode):
            raise InsecureFileError(f"private file {str(target)!r} is not a regular file owned by this user")
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` exists and is 0600 before anything (SQLite, a log handler) writes secrets into it."""
    target = Path(path)
    if not target.parent.exists():
        private_directory(target.parent)
    os.close(_open_private(target, os.O_WRONLY | os.O_APPEND))
    return target


def private_sqlite(url: str) -> None:
    """A SQLite store at ``url`` (a ``sqlite:///`` path) and its WAL/SHM/journal files are 0600 in a 0700
    folder: created so, or tightened if an older version left them readable. Other URLs: nothing to do."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return
    path = Path(url.removeprefix("sqlite:///")).expanduser()
    if not path.parent.exists():
        private_directory(path.parent)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        extra = path.with_name(path.name + suffix)
        if extra.exists() or extra.is_symlink():
            os.close(_open_private(extra, os.O_RDONLY))


def open_private_append(path: str | os.PathLike[str]) -> int:
    """An ``opener`` for ``open()`` / logging handlers: append, created 0600, never through a link."""
    return _open_private(Path(path), os.O_WRONLY | os.O_APPEND)


def check_private_mode(path: str | os.PathLike[str], what: str = "private key") -> None:
    """Refuse a secret file that other local users can read or write (group/world bits set)."""
    target = Path(path)
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode & 0o077:
        raise InsecureFileError(f"{what} {str(target)!r} is accessible to other users (mode {mode:04o}); "
                                f"run: chmod 600 {target}")


def _write_beside(target: Path, data: bytes, mode: int) -> str:
    """The shared first half of a complete-or-nothing write: ``data`` in a temporary file beside ``target``
    (same folder, so a rename or link into place stays on one file system), created with ``mode``, fsynced.
    Returns its path; on failure nothing is left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
    """Write to a temporary file beside ``path`` (created with ``mode``), fsync, then rename over it."""
    target = Path(path)
    tmp = _write_beside(target, data, mode)
    try:
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def create_exclusive_bytes(path: str | os.PathLike[str], data: bytes, mode: int = PRIVATE_FILE) -> bool:
    """Publish ``data`` at ``path`` complete or not at all, unless a file is there already (then False).

    Written beside it, fsynced, then hard-linked into place (link fails if the name exists): a process that
    starts at the same moment reads the whole key another one made, never an empty file between O_EXCL and write."""
    target = Path(path)
    tmp = _write_beside(target, data, mode)
    try:
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError as exc:  # a file system without hard links: exclusive create, then write
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            try:
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
        return True
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], value: object, **dump_options: object) -> Path:
    """JSON, written atomically (a half-written receipt or export must never pass for a whole one)."""
    return atomic_write_text(path, json.dumps(value, **dump_options))  # type: ignore[arg-type]


@contextmanager
def atomic_directory(path: str | os.PathLike[str], replaceable: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``path`` in one rename.

    An existing folder at ``path`` is replaced only if it is empty or holds nothing but files named in
    ``replaceable`` (an earlier output of the same kind): never a folder of someone else's files. It is
    moved aside first and deleted only after the new one is in place, so a crash leaves either the old
    folder or the new one (plus a ``.old`` leftover at worst); if publishing fails, the old folder is put
    back. On an exception the staging folder is removed and ``path`` is untouched.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"'{target}' exists and is not a folder")
    if target.is_dir():
        foreign = sorted(c.name for c in target.iterdir() if c.name not in replaceable)
        if foreign:
            raise FileExistsError(f"'{target}' already holds other files ({', '.join(foreign[:3])}"
                                  f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield staging
        for child in staging.iterdir():  # make the contents durable before the rename publishes them
            if child.is_file():
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.rmdir(old)
            os.replace(target, old)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class HighWater:
    """Named monotonic counters, persisted (0600, atomically) in a JSON file when a path is given.

    Why: a signed CRL or issuance record stays validly signed forever; only its number tells an older one
    from a newer one. A verifier keeps the highest number it has accepted and refuses a lower one.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else None
        self._values: dict[str, int] = {}
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._values = {str(k): int(v) for k, v in dict(data).items()}
            except (OSError, ValueError, TypeError) as exc:
                raise ValueError(f"{self.path}: unreadable high-water file ({exc}); it records the newest CRL and "
                                 "issuance record accepted, so it is not ignored: restore it or remove it "
                                 "deliberately") from None

    def get(self, key: str) -> int:
        return self._values.get(key, -1)

    def advance(self, key: str, value: int) -> None:
        """Record `value` if it is higher than the one kept (persisted before returning)."""
        if value <= self.get(key):
            return
        self._values[key] = int(value)
        if self.path is not None:
            if not self.path.parent.exists():
                private_directory(self.path.parent)
            on_disk = HighWater(self.path)._values if self.path.exists() else {}  # another verifier's numbers
            for name, number in on_disk.items():                              # are never lowered
                self._values[name] = max(self._values.get(name, -1), number)
            atomic_write_bytes(self.path, json.dumps(self._values, sort_keys=True).encode(), PRIVATE_FILE)
