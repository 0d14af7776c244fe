"""Test and benchmark hook: append every frame the coordinator sends or receives to a file.

Set `SAMPAN_WIRE_TAP=<path>` in the coordinator's environment; `read_tap(path)` gives back
(party, direction, frame) records, so a test can search exactly what crossed the wire.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

__all__ = ["TAP_ENV", "read_tap", "WireTap"]

TAP_ENV = "SAMPAN_WIRE_TAP"


class WireTap:
    """Appends (party, direction, frame) records; only for tests that inspect what crossed the wire."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "ab")
        self._lock = threading.Lock()

    def __call__(self, party: str, direction: str, frame: bytes) -> None:
        name = party.encode()
        with self._lock:
            self._fh.write(struct.pack("<H", len(name)) + name + (b"\x00" if direction == "to_party" else b"\x01")
                           + struct.pack("<I", len(frame)) + frame)
            self._fh.flush()


def read_tap(path: str | Path) -> list[tuple[str, str, bytes]]:
    data = Path(path).read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<H", data, i)
        party = data[i + 2:i + 2 + n].decode()
        i += 2 + n
        direction = "to_party" if data[i] == 0 else "from_party"
        (size,) = struct.unpack_from("<I", data, i + 1)
        out.append((party, direction, data[i + 5:i + 5 + size]))
        i += 5 + size
    return out


