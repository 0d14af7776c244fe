"""Watermark keys: made with secrets, stored 0600, a readable key refused, malformed files named."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sampan.errors import SampanError
from sampan.watermark import WatermarkKey, WatermarkKeyError, generate_key, load_key, save_key


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    private = tmp_path / "keys"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    return private


def test_round_trip_is_0600(folder: Path) -> None:
    key = generate_key()
    path = save_key(key, folder / "wm.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key


def test_fresh_keys_differ_and_repr_hides_the_secret() -> None:
    a, b = generate_key(), generate_key()
    assert a.secret != b.secret and a.key_id != b.key_id
    assert a.secret.hex() not in repr(a) and str(a.secret) not in repr(a)


def test_world_readable_key_is_refused(folder: Path) -> None:
    path = save_key(generate_key(), folder / "wm.key")
    for mode in (0o644, 0o640, 0o604):
        os.chmod(path, mode)
        with pytest.raises(WatermarkKeyError, match="chmod 600"):
            load_key(path)


def test_no_silent_overwrite(folder: Path) -> None:
    path = save_key(generate_key(), folder / "wm.key")
    with pytest.raises(WatermarkKeyError, match="exists"):
        save_key(generate_key(), path)
    other = generate_key()
    save_key(other, path, overwrite=True)
    assert load_key(path) == other
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_in_a_world_writable_folder_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(WatermarkKeyError, match="writable by other"):
        save_key(generate_key(), shared / "wm.key")


@pytest.mark.parametrize(("content", "field"), [
    (b"not json", "not JSON"),
    (json.dumps({"format": "other"}).encode(), "format"),
    (json.dumps({"format": "sampan-watermark-key/1", "key_id": "k"}).encode(), "secret"),
    (json.dumps({"format": "sampan-watermark-key/1", "key_id": "k", "secret": "!!"}).encode(), "secret"),
    (json.dumps({"format": "sampan-watermark-key/1", "key_id": "k", "secret": "AAAA"}).encode(), "32 bytes"),
    (json.dumps({"format": "sampan-watermark-key/1", "secret": "A" * 44}).encode(), "key_id"),
])
def test_malformed_key_files_name_the_field(folder: Path, content: bytes, field: str) -> None:
    path = folder / "bad.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(WatermarkKeyError, match=field) as info:
        load_key(path)
    assert isinstance(info.value, SampanError) and str(path) in str(info.value)


def test_missing_key_file(folder: Path) -> None:
    with pytest.raises(WatermarkKeyError, match="does not exist"):
        load_key(folder / "nope.key")


def test_secret_must_be_32_bytes() -> None:
    with pytest.raises(WatermarkKeyError, match="secret"):
        WatermarkKey(b"short", "k")
    with pytest.raises(WatermarkKeyError, match="key_id"):
        WatermarkKey(b"x" * 32, "")
