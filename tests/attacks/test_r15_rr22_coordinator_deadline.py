"""R15-RR22-3: the party's own clean-up deadline is whatever the coordinator says: a huge ``timeout`` disarms it.

Attack: the coordinator sets ``meta["timeout"]`` on ``psi.rr22.accept`` / ``psi.rr22.start``; the party arms
``threading.Timer(float(request.meta["timeout"]), session.close)`` (psi_rr22_party.py:276) with no cap of its
own. A value of 1e12 (or inf) makes the timer thread die at once with OverflowError (timestamp out of range),
so the session has NO deadline; any large finite value is as good as none. A coordinator that then stops
(crash, or on purpose) never sends ``psi.rr22.close``: the partner's 0700 dir with every id in hex stays on disk
for as long as the party process lives (and forever if it dies: nothing sweeps old ``sampan-rr22-*`` dirs), its
worker keeps its 127.0.0.1 port open until spu's own retries give up. The module docstring promises the files
are removed "when the session closes, fails or times out".

Expected safe behaviour: the party bounds the deadline by its own limit (config), so the session is torn down
within that limit whatever the coordinator asks.
Fixed: the deadline is the coordinator's timeout capped at the party's own `max_seconds` (default 4 h); a
non-finite or non-positive timeout is refused with a clear PsiError.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import HAS_SPU, RUN, ask, federation  # noqa: E402,F401

pytestmark = pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh")


def test_the_party_keeps_its_own_deadline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(500)]
    _, handlers, _, transport = federation(ids[:300], ids[200:])
    offer = ask(transport, "bank", "psi.rr22.offer", "pay")
    ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"], timeout=1e12)
    session = handlers["pay"].sessions["bank"]
    try:
        time.sleep(0.5)
        timer = session.timer
        armed = timer is not None and timer.is_alive() and float(timer.interval) <= 24 * 3600
        interval = None if timer is None else timer.interval
        assert armed, f"deadline timer alive={timer is not None and timer.is_alive()}, interval={interval}"
    finally:
        for party, peer in (("pay", "bank"), ("bank", "pay")):
            ask(transport, party, "psi.rr22.close", peer)
    assert not list(tmp_path.rglob("ids.csv"))
