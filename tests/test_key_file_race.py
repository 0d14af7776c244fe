"""Key files made on first use (the audit-signing key, the TOTP sealing key) are published complete: processes that
start together (`sampan console` starts the coordinator and every agent at once, all pointed at one
$SAMPAN_AUDIT_KEY under test) each get the same key, never an empty file caught between create and write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sampan.files import create_exclusive_bytes
from sampan.runtime.audit_chain import AuditSigner
from sampan.web.totp_seal import _load_or_create


def _together(make: Callable[[], bytes], n: int = 8) -> list[bytes | BaseException]:
    barrier = threading.Barrier(n)
    out: list[bytes | BaseException] = [b""] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = make()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _audit_public(path: Path) -> bytes:
    return AuditSigner.load_or_create(path).public_raw


def test_concurrent_first_use_of_an_audit_key_gives_everyone_the_same_complete_key(tmp_path: Path) -> None:
    for attempt in range(30):
        path = tmp_path / f"audit-{attempt}.pem"
        keys = _together(partial(_audit_public, path))
        assert len(set(keys)) == 1 and isinstance(keys[0], bytes), keys
        assert path.stat().st_mode & 0o777 == 0o600


def test_concurrent_first_use_of_a_totp_key_gives_everyone_the_same_complete_key(tmp_path: Path) -> None:
    for attempt in range(30):
        path = tmp_path / f"totp-{attempt}.key"
        keys = _together(partial(_load_or_create, path))
        assert len(set(keys)) == 1 and isinstance(keys[0], bytes) and len(keys[0]) == 32, keys


def test_create_exclusive_bytes_never_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "k"
    assert create_exclusive_bytes(target, b"first") is True
    assert create_exclusive_bytes(target, b"second") is False
    assert target.read_bytes() == b"first" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k"]
