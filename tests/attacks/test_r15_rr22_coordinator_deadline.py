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

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.psi_party import PsiParty
from sampan.vertical.psi_rr22_party import Rr22Party, register_rr22
from sampan.wire import Message

ROOT = Path(__file__).resolve().parents[2]
HAS_SPU = (ROOT / ".venv-spu" / "bin" / "python").is_file()
RUN = "run-r15-rr22"


def federation(a: list[str], b: list[str]) -> tuple[dict[str, PsiParty], dict[str, Rr22Party],
                                                    dict[str, SealedChannels], InProcessTransport]:
    """Bank (label holder) and pay (partner) as the project's tests build them; the test plays the coordinator."""
    parties = {"bank": PsiParty("bank", np.array(a, dtype=object)), "pay": PsiParty("pay", np.array(b, dtype=object))}
    keys = {n: PartyKeys.generate() for n in parties}
    public = {n: k.public_bytes for n, k in keys.items()}
    apps, handlers, channels = {}, {}, {}
    for name, party in parties.items():
        app = PartyApp(name)
        party.register(app)
        handlers[name] = register_rr22(party, app)
        party.channels = channels[name] = SealedChannels(name, keys[name], public, RUN,
                                                         roles={"bank": "label_holder", "pay": "partner"})
        apps[name] = app
    return parties, handlers, channels, InProcessTransport(apps)


def ask(transport: InProcessTransport, to: str, kind: str, peer: str, envelope: np.ndarray | None = None,
        **meta: object) -> Message:
    arrays = {} if envelope is None else {"envelope": envelope}
    replies = list(transport.exchange([Message(RUN, 0, "coordinator", to, kind, arrays,
                                               {"mode": "both", "check_format": True, "timeout": 60.0,
                                                "peer": peer, **meta})]))
    assert len(replies) == 1
    return replies[0]


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
