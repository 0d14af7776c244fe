"""Attacks on the RR22 PSI backend's tunnel (issue 15, item 3b): what the coordinator relays, and tampering.

Claims pinned here:
1. The coordinator (the relay between the two parties) sees only sealed bytes: no id, no hex-encoded id, no
   padded id bytes appear anywhere in what it carries, in either direction, for the whole run.
2. A coordinator that flips a bit in a tunnel envelope, replays one or drops one makes the run fail closed:
   an error, no intersection recorded at either party, the workers gone and the side files removed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.psi_party import PsiParty
from sampan.vertical.psi_rr22 import run_rr22
from sampan.vertical.psi_rr22_party import Rr22Party, register_rr22
from sampan.wire import Message, encode

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (ROOT / ".venv-spu" / "bin" / "python").is_file(),
                                                     reason="spu venv missing: tools/install_spu.sh")]

A = [f"CUSTOMER-{i:06d}" for i in range(0, 600)]
B = [f"CUSTOMER-{i:06d}" for i in range(300, 1000)]


class Relay(InProcessTransport):
    """The coordinator's transport, recording every message it carries and optionally tampering with one."""

    def __init__(self, apps: dict[str, PartyApp], tamper: str | None = None) -> None:
        super().__init__(apps)
        self.seen: list[bytes] = []
        self.tamper = tamper
        self.pumps = 0
        self.first: np.ndarray | None = None

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        out = []
        for message in messages:
            if message.kind == "psi.rr22.pump" and "envelope" in message.arrays:
                self.pumps += 1
                envelope = message.arrays["envelope"]
                if self.first is None:
                    self.first = envelope.copy()
                if self.tamper == "flip" and self.pumps == 3:
                    envelope = envelope.copy()
                    envelope[len(envelope) // 2] ^= 0x40
                elif self.tamper == "replay" and self.pumps == 4:
                    envelope = self.first
                elif self.tamper == "drop" and self.pumps == 3:
                    message = Message(message.run_id, message.step, message.sender, message.recipient, message.kind,
                                      {}, message.meta)
                    out.append(message)
                    continue
                message = Message(message.run_id, message.step, message.sender, message.recipient, message.kind,
                                  {**message.arrays, "envelope": envelope}, message.meta)
            out.append(message)
        for message in out:
            self.seen.append(encode(message))
        for reply in super().exchange(out):
            self.seen.append(encode(reply))
            yield reply


def federation(tamper: str | None = None) -> tuple[dict[str, PsiParty], dict[str, Rr22Party], Relay]:
    parties = {"bank": PsiParty("bank", np.array(A, dtype=object)), "pay": PsiParty("pay", np.array(B, dtype=object))}
    keys = {n: PartyKeys.generate() for n in parties}
    public = {n: k.public_bytes for n, k in keys.items()}
    apps, handlers = {}, {}
    for name, party in parties.items():
        app = PartyApp(name)
        party.register(app)
        handlers[name] = register_rr22(party, app)
        party.channels = SealedChannels(name, keys[name], public, "run-x",
                                        roles={"bank": "label_holder", "pay": "partner"})
        apps[name] = app
    return parties, handlers, Relay(apps, tamper)


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_the_coordinator_relays_only_sealed_bytes() -> None:
    parties, _, relay = federation()
    outcome = run_rr22(relay, "run-x", "bank", "pay", "both")
    assert outcome.cardinality == 300 and relay.pumps > 0
    carried = b"".join(relay.seen)
    for ident in A[::7] + B[::7]:
        raw = ident.encode()
        assert raw not in carried
        assert raw.hex().encode() not in carried  # the side file's form
        assert raw.hex().upper().encode() not in carried
    assert b"CUSTOMER" not in carried and b"435553544f4d4552" not in carried


@pytest.mark.parametrize("tamper", ["flip", "replay", "drop"])
def test_tampered_tunnel_frames_fail_closed(tamper: str, private_tmp: Path) -> None:
    parties, handlers, relay = federation(tamper)
    with pytest.raises(Exception) as caught:
        run_rr22(relay, "run-x", "bank", "pay", "both", timeout=60)
    assert "authenticate" in str(caught.value) or "out of order" in str(caught.value) \
        or "failed" in str(caught.value) or "did not finish" in str(caught.value)
    assert "pay" not in parties["bank"].rows and "bank" not in parties["pay"].rows
    assert all(not h.sessions for h in handlers.values())
    assert not [p for p in private_tmp.iterdir() if p.name.startswith("sampan-rr22-")]
