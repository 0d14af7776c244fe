"""R15-ENGINE: a party's Ray engine is code execution for whoever reaches it, so nobody outside the party may.

Attacks: (1) a coordinator or another party dials the engine from the network: every Ray server of a local
engine listens on 127.0.0.1 only; (2) a process that does reach it (same host, or a misrouted packet) without
the party's engine certificate: refused by mutual TLS — with no certificate, with a certificate from another
party's engine CA, and in plain text — while the party's own certificate is accepted (the control); (3) an
engine address on a public interface is refused before anything connects; (4) pickled task bytes cannot ride a
Sampan message: the wire codec refuses objects and never unpickles, and no wire/transport module imports pickle.
"""

from __future__ import annotations

import ast
import os
import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sampan.compute import issue_engine_certs
from sampan.compute.ray_engine import check_private_address
from sampan.errors import ConfigError
from sampan.wire import Message, WireError, decode, encode

SRC = Path(__file__).resolve().parents[2] / "src" / "sampan"


@pytest.mark.parametrize("address", ["8.8.8.8:6379", "ray://203.0.113.9:10001", "0.0.0.0:6379", "engine.example:1"])
def test_a_public_engine_address_is_refused_before_connecting(address: str) -> None:
    with pytest.raises(ConfigError, match=r"\[compute\] address"):
        check_private_address(address)


def test_no_wire_message_carries_pickled_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    class Task:  # what cloudpickle would ship: an arbitrary object
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    for arrays, meta in (({"task": np.array([Task()], dtype=object)}, {}), ({}, {"task": pickle.dumps(Task())}),
                         ({}, {"task": Task()})):
        with pytest.raises(WireError):
            encode(Message("r", 0, "coordinator", "bank", "fit", arrays=arrays, meta=meta))

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the wire codec unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    blob = np.frombuffer(pickle.dumps(Task()), dtype=np.uint8)  # pickled bytes as a plain uint8 array
    back = decode(encode(Message("r", 0, "coordinator", "bank", "fit", arrays={"x": blob})))
    assert back.arrays["x"].dtype == np.uint8 and back.arrays["x"].tobytes() == blob.tobytes()  # data, never code
    corrupt = bytearray(encode(Message("r", 0, "a", "b", "fit", arrays={"x": np.zeros(2)})))
    corrupt[corrupt.index(b'"float64"') + 1:corrupt.index(b'"float64"') + 8] = b"object "
    with pytest.raises(WireError):
        decode(bytes(corrupt))


def test_no_module_that_carries_messages_imports_pickle_or_ray() -> None:
    for folder in ("wire", "transport"):
        for path in sorted((SRC / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    assert name.split(".")[0] not in {"pickle", "cloudpickle", "dill", "ray", "_pickle"}, \
                        f"{path.relative_to(SRC)} imports {name}"
    for path in sorted(SRC.rglob("*.py")):  # ray is imported in the engine module only
        if path.name == "ray_engine.py":
            continue
        assert "import ray" not in path.read_text(encoding="utf-8"), f"{path.relative_to(SRC)} imports ray"


# --- against a running engine (Ray) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine() -> Iterator[object]:
    pytest.importorskip("ray")
    from sampan.compute.ray_engine import RayEngine

    running = RayEngine(num_workers=1)
    try:
        yield running
    finally:
        running.close()


def _gcs(engine: object) -> tuple[str, int]:
    address = engine._ray.get_runtime_context().gcs_address  # type: ignore[attr-defined]
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _outside_address() -> str | None:
    """This machine's address on its primary interface (what another machine would dial), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.123", 9))  # no packet is sent: only the route's source address is chosen
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_the_engine_listens_on_loopback_only(engine: object) -> None:
    host, port = _gcs(engine)
    assert host == "127.0.0.1"
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback interface to dial from")
    with socket.socket() as attacker, pytest.raises(OSError):  # the coordinator / another bank dials the port
        attacker.settimeout(3)
        attacker.connect((outside, port))
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass  # the control: the port is there, on loopback


def _engine_pids(scratch: Path) -> set[int]:
    """Every process of this engine: those whose command line names its scratch folder, and their descendants."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if str(scratch).encode() in cmdline:
            roots.add(pid)
    found, grew = set(roots), True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def _listening(pids: set[int]) -> list[str]:
    """The local addresses (hex, as /proc/net lists them) of every TCP socket these processes listen on."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1].split(":")[0])
    return found


_LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_every_server_of_the_engine_listens_on_loopback_only(engine: object) -> None:
    pids = _engine_pids(engine._scratch)  # type: ignore[attr-defined]
    assert len(pids) >= 3  # GCS, raylet, a worker at least
    listening = _listening(pids)
    assert listening, "found no listening socket of the engine's processes"
    assert set(listening) <= _LOOPBACK_HEX, f"an engine process listens beyond loopback: {listening}"


def _ready(target: str, credentials: object | None) -> bool:
    import grpc

    channel = (grpc.insecure_channel(target) if credentials is None
               else grpc.secure_channel(target, credentials))
    try:
        grpc.channel_ready_future(channel).result(timeout=4)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


@pytest.mark.slow
def test_a_client_without_the_partys_engine_certificate_is_refused(engine: object, tmp_path: Path) -> None:
    import grpc

    tls = engine.tls  # type: ignore[attr-defined]
    assert tls is not None
    host, port = _gcs(engine)
    target = f"{host}:{port}"
    ca = tls.ca_cert.read_bytes()
    other = issue_engine_certs(tmp_path / "other-bank", party="other-bank")  # another party's own engine CA
    assert not _ready(target, None)  # plain text
    assert not _ready(target, grpc.ssl_channel_credentials(root_certificates=ca))  # TLS, no client certificate
    assert not _ready(target, grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=other.key.read_bytes(), certificate_chain=other.cert.read_bytes()))
    assert _ready(target, grpc.ssl_channel_credentials(  # the control: the party's own node certificate
        root_certificates=ca, private_key=tls.key.read_bytes(), certificate_chain=tls.cert.read_bytes()))
