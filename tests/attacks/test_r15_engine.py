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
