"""R15-RR22B-3: a pump with ``wait`` "nan" holds the party's handler, spinning, past the party's own 1 s cap.

Attack (the coordinator, which chooses each pump's ``wait``): the wire refuses a float NaN in meta, but not
the string ``"nan"``, and `Rr22Party._pump` caps ``wait`` with ``min(float(wait), 1.0)``, which turns the
string into NaN and passes it through (every comparison with NaN is false); `Tunnel.drain` then
sets a NaN deadline that ``now >= limit`` never reaches, and ``Condition.wait(NaN)`` returns at once, so the
handler loops, busy, until the local spu happens to send something or the session closes. The deployed party
answers one request at a time (see R15-RR22-9), so it answers nothing else meanwhile, and the spinning thread
takes the CPU (and the GIL) from the tunnel threads that feed spu. ``settle`` refuses it (a number, ``>= 0``); ``wait``
does not. The test plays the session with a stand-in worker process (no spu needed) and its real tunnel.

Expected safe behaviour: a non-finite or non-numeric ``wait`` is refused with a clear PsiError (or taken as the
cap), and the pump answers within the party's cap.

Fixed: `Rr22Party._pump` checks ``wait`` as ``settle`` is checked (`_pump_seconds`: an int or float, not a bool,
finite, ``>= 0``) before it feeds the envelope, and refuses anything else with a PsiError naming the party and
the field; the tests below show the refusal for "nan", "inf", "0.5", -1, True and None, and that a number
still pumps (the wire itself refuses a float NaN or infinity in meta).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import ask, federation  # noqa: E402

from sampan.vertical.psi_rr22_session import Rr22Session  # noqa: E402
from sampan.vertical.psi_rr22_tunnel import Tunnel  # noqa: E402


@pytest.mark.parametrize("wait", ["nan", "inf", "0.5", -1, True, None])
def test_a_bad_wait_pump_is_refused_within_the_cap(wait: object) -> None:
    _, handlers, channels, transport = federation(["BR1", "BR2"], ["BR2", "BR3"])
    tunnel = Tunnel("bank", "pay", b"s" * 16, lambda x: channels["bank"].seal_arrays("pay", x),
                    lambda e: channels["bank"].open_arrays("pay", e), target_port=1)
    stand_in = subprocess.Popen(["sleep", "60"], start_new_session=True)  # noqa: S603,S607 - the worker's place
    session = Rr22Session("pay", "a", "both", b"s" * 16, width=3, tunnel=tunnel, process=stand_in, started=True)
    handlers["bank"].sessions["pay"] = session
    outcome: list[object] = []

    def pump() -> None:
        try:
            outcome.append(ask(transport, "bank", "psi.rr22.pump", "pay", wait=wait))
        except Exception as exc:  # noqa: BLE001 - a prompt refusal is a safe answer
            outcome.append(exc)

    worker = threading.Thread(target=pump, daemon=True)
    worker.start()
    try:
        worker.join(3.0)
        assert not worker.is_alive(), f"psi.rr22.pump (wait {wait!r}) still running 3 s after the request; cap 1 s"
    finally:
        session.close()  # kills the stand-in, closes the tunnel: frees the handler
        worker.join(10.0)
    assert outcome
    assert isinstance(outcome[0], Exception) and "wait" in str(outcome[0]), outcome


def test_a_numeric_wait_still_pumps() -> None:
    _, handlers, channels, transport = federation(["BR1", "BR2"], ["BR2", "BR3"])
    tunnel = Tunnel("bank", "pay", b"s" * 16, lambda x: channels["bank"].seal_arrays("pay", x),
                    lambda e: channels["bank"].open_arrays("pay", e), target_port=1)
    stand_in = subprocess.Popen(["sleep", "60"], start_new_session=True)  # noqa: S603,S607 - the worker's place
    session = Rr22Session("pay", "a", "both", b"s" * 16, width=3, tunnel=tunnel, process=stand_in, started=True)
    handlers["bank"].sessions["pay"] = session
    try:
        for wait in (0, 0.01, 5):  # 5 is capped at 1 s
            reply = ask(transport, "bank", "psi.rr22.pump", "pay", wait=wait)
            assert reply.kind == "psi.rr22.pump" and reply.meta["done"] is False and not reply.arrays
    finally:
        session.close()
