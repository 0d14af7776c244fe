"""R15-RR22-4: the tunnel's 127.0.0.1 listener forwards ANY local process's connection to the partner's spu,
sealed and authenticated as this party.

Attack: another local user (or any process) on the party's host connects to the tunnel's listening port while
an RR22 session runs (the port is findable: ``ss -ltn`` lists it; it is open for the whole run). `Tunnel._accept`
(psi_rr22_tunnel.py:75) accepts every connection, sends OPEN to the peer and relays the bytes, sealed with this
party's channel key, into a fresh connection to the PEER's spu link. So an unprivileged local process speaks to
the partner's brpc link as if it were this party's spu worker (inject or race link messages; with spu's
semi-honest RR22 a deviating "party" is outside its security), and it reads what the peer's spu answers on that
connection. "Nothing listens beyond 127.0.0.1" does not keep out other users of the same host, and
docs/deploy.md:108 ("no new port opens") is not so: two loopback ports open per session, this listener and
spu's own brpc port (which likewise accepts any local process; its brpc built-in HTTP pages are off: held).
Related: the spu port is picked by `_free_port` (bind, close, hand the number to the worker seconds later), so
a local process that binds that number first receives the connections the tunnel dials for the peer's spu.

Expected safe behaviour: the tunnel relays only connections from the party's own spu worker (e.g. check the
peer process with SO_PEERCRED against the worker's pid/uid, or use a Unix socket in the 0700 dir), and refuses
or drops any other connection without telling the peer.
Fixed: the tunnel relays only connections whose socket inode is one of the bound worker's fds and dials
only a listener the worker holds (`psi_rr22_local`); other local processes are closed unrelayed. Residual:
spu's own brpc port still accepts any local process (docs/deploy.md says so).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.vertical.psi_rr22_tunnel import Tunnel


def _recording_server() -> tuple[socket.socket, int, bytearray]:
    """Stands in for the partner's spu link: records every byte it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    got = bytearray()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            while data := conn.recv(65536):
                got.extend(data)
    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1]), got


def test_a_foreign_local_connection_is_not_relayed_to_the_partner() -> None:
    server, port, got = _recording_server()
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15") for n in keys}
    session = os.urandom(16)
    bank = Tunnel("bank", "pay", session, lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=1)
    pay = Tunnel("pay", "bank", session, lambda x: ch["pay"].seal_arrays("bank", x),
                 lambda e: ch["pay"].open_arrays("bank", e), target_port=port)
    worker = subprocess.Popen(["sleep", "30"])  # the bank's own spu worker (holds no socket to the tunnel)
    bank.bind_worker(worker.pid)
    pay.bind_worker(os.getpid())  # the test process plays the partner's spu (the recording server)
    try:
        intruder = socket.create_connection(("127.0.0.1", bank.port))  # not the bank's spu worker
        intruder.sendall(b"INJECTED-BY-ANOTHER-LOCAL-USER")
        deadline = time.monotonic() + 5
        while b"INJECTED" not in got and time.monotonic() < deadline:
            for src, dst in ((bank, pay), (pay, bank)):
                envelope = src.drain(0.02)
                if envelope is not None:
                    dst.feed(envelope)
        intruder.close()
        assert b"INJECTED" not in bytes(got), "a foreign local connection reached the partner's spu link"
    finally:
        worker.kill()
        worker.wait()
        bank.close()
        pay.close()
        server.close()


def test_a_squatter_on_the_workers_port_gets_nothing_from_the_partner() -> None:
    """The other half: a local process that bound the worker's port first is not dialled with the peer's bytes."""
    squatter, port, got = _recording_server()  # listens in the test process, not in the bound worker
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15") for n in keys}
    session = os.urandom(16)
    bank = Tunnel("bank", "pay", session, lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=1)
    pay = Tunnel("pay", "bank", session, lambda x: ch["pay"].seal_arrays("bank", x),
                 lambda e: ch["pay"].open_arrays("bank", e), target_port=port)
    worker = subprocess.Popen(["sleep", "30"])  # the partner's own spu worker, which does not hold `port`
    bank.bind_worker(os.getpid())  # the test process plays the bank's spu: its connection is relayed
    pay.bind_worker(worker.pid)
    try:
        client = socket.create_connection(("127.0.0.1", bank.port))
        client.sendall(b"FOR-THE-PARTNERS-SPU-ONLY")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for src, dst in ((bank, pay), (pay, bank)):
                envelope = src.drain(0.02)
                if envelope is not None:
                    dst.feed(envelope)
        client.close()
        assert bytes(got) == b"", "the partner's bytes reached a process squatting on the worker's port"
    finally:
        worker.kill()
        worker.wait()
        bank.close()
        pay.close()
        squatter.close()
