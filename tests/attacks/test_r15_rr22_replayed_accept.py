"""R15-RR22-2: a second offer/accept for the same peer replaces the live session without closing it: its spu
worker, its tunnel listener and its side file of ids are orphaned, and `psi.rr22.close` no longer reaches them.

Attack: a curious or careless coordinator (or a retry after a lost reply) sends ``psi.rr22.accept`` to the
partner twice with the same sealed offer (envelopes carry no replay protection across requests; the relay holds
them). `Rr22Party._accept` stores the new session in ``self.sessions[peer]`` (psi_rr22_party.py:318) over the
first one, which had already launched; ``_offer`` (line 296) does the same at the label holder. Nothing closes
the first: its worker keeps running, its 127.0.0.1 listener stays open, its 0700 dir with every id (hex) stays
on disk until the coordinator-chosen timer fires (never, with R15-RR22-3).

Expected safe behaviour: a request that would start a session while one with that peer is in progress is
refused (or closes the old one first); after ``psi.rr22.close`` no worker and no side file is left.
Fixed: an offer or accept for a peer whose session is live is refused, and the refusal closes the live session
(worker killed, side file removed).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import HAS_SPU, RUN, ask, federation  # noqa: E402,F401

pytestmark = pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh")


def test_a_replayed_accept_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(500)]
    _, handlers, _, transport = federation(ids[:300], ids[200:])
    offer = ask(transport, "bank", "psi.rr22.offer", "pay")
    ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"])
    first = handlers["pay"].sessions["bank"]
    try:
        try:  # the replay: refusing it is the safe answer, so an error here is fine
            ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"])
        except Exception:  # noqa: BLE001
            pass
        for party, peer in (("pay", "bank"), ("bank", "pay")):
            ask(transport, party, "psi.rr22.close", peer)
        alive = first.process is not None and first.process.poll() is None
        left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("ids.csv"))
        assert not alive and left == [], f"first worker alive={alive}, side files left: {left}"
    finally:
        first.close()  # the test's own cleanup (the party no longer can)
