"""R15-PSI2-4 (fixed; this test shows the attack now fails).

R15-PSI2-4: the label holder's session deadline, armed at the offer since commit 5c09449 (the early side file
"goes at the deadline"), is armed again from scratch at ``psi.rr22.start`` (`_launch` -> `_arm`), so a coordinator
that waits until just before the offer's deadline and then sends the start keeps the session (and its side file
of every id, written at the offer) alive for up to twice the party's own `max_seconds` (8 h by default), where the
module docstring bounds a session by `max_seconds` "whatever the coordinator asks".

Expected: a session never outlives its offer by more than the party's `max_seconds` (the start may shorten the
deadline, never push it past the offer's).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import HAS_SPU, ask, federation  # noqa: E402

pytestmark = pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh")

LIMIT = 2.0  # the label holder's own max_seconds in this test


def test_the_start_cannot_push_the_deadline_past_the_offers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(300)]
    _, handlers, _, transport = federation(ids[:200], ids[100:])
    handlers["bank"].max_seconds = LIMIT
    offered = time.monotonic()
    try:
        offer = ask(transport, "bank", "psi.rr22.offer", "pay", timeout=LIMIT)
        time.sleep(LIMIT * 0.6)
        accept = ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"], timeout=60.0)
        ask(transport, "bank", "psi.rr22.start", "pay", accept.arrays["envelope"], timeout=LIMIT)
        session = handlers["bank"].sessions["pay"]
        time.sleep(max(0.0, offered + LIMIT + 0.6 - time.monotonic()))
        alive = not session.closed
        files = sorted(p.name for p in tmp_path.rglob("ids.csv"))
        assert not alive, (f"the label holder's session is open {time.monotonic() - offered:.1f} s after its offer "
                           f"(max_seconds {LIMIT}); side files: {files}")
    finally:
        for party, peer in (("pay", "bank"), ("bank", "pay")):
            ask(transport, party, "psi.rr22.close", peer)
