"""R15-ENGINE-6: ``RAY_ADDRESS`` in the agent's environment moves a "private local instance" onto another cluster.

Attack / misconfiguration: ``[compute] engine = "ray"`` with no address promises a private Ray instance on
127.0.0.1. `RayEngine` calls ``ray.init(address=None, ...)``, and Ray replaces a missing address with
``RAY_ADDRESS`` from the environment (a leftover from a data-science shell, a systemd drop-in, a container
image default). With ``RAY_ADDRESS=ray://<host>:10001`` the party's driver becomes a Ray Client of that host:
`check_private_address` never sees the host (a public one is dialled too), and every block with the party's
rows would run there. ``_ENV_FIXED`` pins usage statistics but not the address.

Expected safe behaviour: the engine ignores ``RAY_ADDRESS`` (passes ``address="local"``) or refuses it with a
ConfigError naming the variable, before anything is dialled; the only engine address is ``[compute] address``.
Fixed: a private instance is started with ``address="local"`` and RAY_ADDRESS is removed from the environment
while the engine runs (restored at close); the listener sees no connection.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PARTY = r'''
from sampan.compute import ComputeSettings, make_engine
engine = make_engine(ComputeSettings(engine="ray", num_workers=1), party="bank")  # no address: private instance
engine.close()
'''


@pytest.mark.slow
def test_a_local_engine_does_not_dial_the_address_in_the_environment(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    foreign = socket.socket()
    foreign.bind(("127.0.0.1", 0))
    foreign.listen(8)
    foreign.settimeout(1.0)
    dials: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = foreign.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    dials.append(conn.recv(16))
                except OSError:
                    dials.append(b"")

    threading.Thread(target=accept, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_ADDRESS"] = f"ray://127.0.0.1:{foreign.getsockname()[1]}"
    env["TMPDIR"] = str(tmp_path)  # the killed party's engine folders land here (R15-ENGINE-7)
    party = subprocess.Popen([sys.executable, "-c", PARTY], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not dials and party.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        party.kill()
        party.wait()
        foreign.close()
    assert not dials, f"the private local engine dialled RAY_ADDRESS ({len(dials)} connection(s))"
