"""The opt-in RR22 PSI backend (spu in a subprocess, its link tunnelled through the coordinator).

Fast tests (no spu): refusals before anything starts, the tunnel's framing and fail-closed checks, the side
file's encoding. Slow tests start spu (.venv-spu; `make test` installs it): the intersection equals the ECDH
backend's, the alignment path, and that side files and workers are gone after success, failure and timeout.
"""

from __future__ import annotations

import os
import select
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.psi import align, run_psi
from sampan.vertical.psi_party import PsiParty
from sampan.vertical.psi_rr22 import Rr22Unavailable, refuse_unsupported, run_rr22, spu_python
from sampan.vertical.psi_rr22_party import Rr22Party, _padded, _read_result, _write_ids, register_rr22
from sampan.vertical.psi_rr22_tunnel import Tunnel, TunnelError

ROOT = Path(__file__).resolve().parents[1]
HAS_SPU = (Path(os.environ.get("SAMPAN_SPU_VENV") or ROOT / ".venv-spu") / "bin" / "python").is_file()
needs_spu = pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh (make test installs it)")


RR22: dict[int, dict[str, Rr22Party]] = {}  # id(transport) -> each party's RR22 handlers (white-box checks)


def federation(ids: dict[str, list[str]], run_id: str = "run-rr22") -> tuple[dict[str, PsiParty], InProcessTransport]:
    parties = {name: PsiParty(name, np.array(v, dtype=object)) for name, v in ids.items()}
    keys = {name: PartyKeys.generate() for name in parties}
    public = {name: k.public_bytes for name, k in keys.items()}
    roles = {name: "label_holder" if name == "bank" else "partner" for name in parties}
    apps = {}
    handlers: dict[str, Rr22Party] = {}
    for name, party in parties.items():
        app = PartyApp(name)
        party.register(app)
        handlers[name] = register_rr22(party, app)
        party.channels = SealedChannels(name, keys[name], public, run_id, roles=roles)
        apps[name] = app
    transport = InProcessTransport(apps)
    RR22[id(transport)] = handlers
    return parties, transport


def sets(n_a: int, n_b: int, common: int, seed: int = 0, fmt: str = "BR%08d") -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    pool = [fmt % i for i in rng.choice(10**7, n_a + n_b - common, replace=False)]
    a, b = pool[:common] + pool[common:n_a], pool[:common] + pool[n_a:]
    rng.shuffle(a)
    rng.shuffle(b)
    return a, b


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("sampan-rr22-"))


# --- refusals: before anything starts ---------------------------------------------------------------

def test_modes_spu_lacks_are_refused_with_a_clear_error() -> None:
    with pytest.raises(Rr22Unavailable, match="cardinality"):
        refuse_unsupported("cardinality")
    with pytest.raises(Rr22Unavailable, match="exactly two parties"):
        refuse_unsupported("both", parties=3)
    with pytest.raises(Rr22Unavailable, match="unknown PSI mode"):
        refuse_unsupported("everything")


def test_a_missing_spu_venv_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAMPAN_SPU_VENV", str(tmp_path / "nowhere"))
    with pytest.raises(Rr22Unavailable, match="tools/install_spu.sh"):
        spu_python()
    parties, transport = federation({"bank": ["a1", "a2"], "pay": ["a1", "a3"]})
    with pytest.raises(Exception, match="tools/install_spu.sh"):  # the party refuses (the coordinator needs no spu)
        run_rr22(transport, "run-rr22", "bank", "pay")
    assert not RR22[id(transport)]["bank"].sessions and "pay" not in parties["bank"].rows


def test_cardinality_mode_refused_before_any_party_is_asked() -> None:
    _, transport = federation({"bank": ["a1"], "pay": ["a1"]})
    with pytest.raises(Rr22Unavailable, match="cardinality"):
        run_rr22(transport, "run-rr22", "bank", "pay", "cardinality")
    assert transport.traffic.summary() == []


def test_align_refuses_an_unknown_backend() -> None:
    _, transport = federation({"bank": ["a1"], "pay": ["a1"]})
    with pytest.raises(ValueError, match="unknown PSI backend"):
        align(transport, "run-rr22", "bank", ["pay"], backend="kkrt")


# --- the side file ------------------------------------------------------------------------------------

def test_side_file_keys_are_plain_ids_or_escaped_hex_and_map_back_to_rows(tmp_path: Path) -> None:
    ids = np.array([b"BR1", "Zoé-客户".encode(), b"x,y\"z", b"00123", b"a%b", b"NA"], dtype="S16")
    _write_ids(tmp_path / "ids.csv", ids, 16)
    text = (tmp_path / "ids.csv").read_bytes()
    lines = text.splitlines()
    assert lines[0] == b"id,row" and all(line.count(b",") == 1 for line in lines)  # no CSV quoting issues
    assert lines[1] == b"BR1,00000000" and lines[4] == b"00123,00000003"  # plain ids go as they are
    assert lines[2] == b"%" + "Zoé-客户".encode().hex().encode() + b",00000001"  # any other byte: % and hex
    assert lines[5] == b"%612562,00000004"  # "%" itself is escaped, so the keys are injective
    # spu writes the found lines back sorted by key, under a quoted header; rows come back in that order
    (tmp_path / "out.csv").write_bytes(b'"id","row"\n' + b"\n".join(sorted(lines[1:])) + b"\n")
    rows, found = _read_result(tmp_path / "out.csv", ids, 16, "bank")
    assert sorted(rows.tolist()) == list(range(6)) and np.array_equal(found, _padded(ids[rows], 16))


@pytest.mark.parametrize("body", [b"zz\n", b"BR1,0000000\n", b"BR1,00000000", b",\n", b"BR1;00000000\n"])
def test_a_malformed_worker_result_is_an_error(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "out.csv").write_bytes(b'"id","row"\n' + body)
    with pytest.raises(Exception, match="malformed"):
        _read_result(tmp_path / "out.csv", np.array([b"BR1"], dtype="S3"), 3, "bank")


@pytest.mark.parametrize("body", [b"BR2,00000000\n", b"BR1,00000001\n", b"BR1,00000000\nBR1,00000000\n",
                                  b"%425231,00000000\n"])
def test_a_result_line_this_party_did_not_write_is_refused(tmp_path: Path, body: bytes) -> None:
    """A row out of range, a key that is not that row's id (or not its one encoding), a row named twice."""
    (tmp_path / "out.csv").write_bytes(b'"id","row"\n' + body)
    with pytest.raises(Exception, match="does not hold"):
        _read_result(tmp_path / "out.csv", np.array([b"BR1"], dtype="S3"), 3, "bank")


# --- the tunnel -----------------------------------------------------------------------------------------

def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            def echo(c: socket.socket = conn) -> None:
                while data := c.recv(65536):
                    c.sendall(data)
                c.close()
            threading.Thread(target=echo, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def tunnel_pair(target_port: int) -> tuple[Tunnel, Tunnel]:
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-t") for n in keys}
    session = os.urandom(16)
    a = Tunnel("bank", "pay", session, lambda x: ch["bank"].seal_arrays("pay", x),
               lambda e: ch["bank"].open_arrays("pay", e), target_port=1)
    b = Tunnel("pay", "bank", session, lambda x: ch["pay"].seal_arrays("bank", x),
               lambda e: ch["pay"].open_arrays("bank", e), target_port=target_port)
    for tunnel in (a, b):  # here the test process plays both parties' spu workers
        tunnel.bind_worker(os.getpid())
    return a, b


def pump(a: Tunnel, b: Tunnel, rounds: int = 50) -> None:
    for _ in range(rounds):
        for src, dst in ((a, b), (b, a)):
            envelope = src.drain(0.01)
            if envelope is not None:
                dst.feed(envelope)


def test_tunnel_carries_a_tcp_stream_both_ways_through_sealed_envelopes() -> None:
    server, port = _echo_server()
    a, b = tunnel_pair(port)
    try:
        client = socket.create_connection(("127.0.0.1", a.port))
        payload = os.urandom(3 << 20)  # several MB: many reads, packed into few envelopes
        threading.Thread(target=client.sendall, args=(payload,), daemon=True).start()
        got = bytearray()
        deadline = time.monotonic() + 20
        while len(got) < len(payload) and time.monotonic() < deadline:
            pump(a, b, 1)
            if select.select([client], [], [], 0.01)[0]:  # the socket stays blocking for the sending thread
                got += client.recv(1 << 20)
        assert bytes(got) == payload
        assert a.bytes_out >= len(payload) and b.bytes_in >= len(payload)
        client.close()
    finally:
        a.close()
        b.close()
        server.close()


def test_tunnel_keeps_many_connections_apart_and_in_order() -> None:
    """Regression: a connection the peer opened once got two readers (the dial won the race with the check),
    which interleaved its bytes. Several connections at once, each echoed back intact."""
    server, port = _echo_server()
    a, b = tunnel_pair(port)
    try:
        clients = [socket.create_connection(("127.0.0.1", a.port)) for _ in range(6)]
        payloads = [os.urandom(700_000 + k) for k in range(6)]
        for client, payload in zip(clients, payloads, strict=True):
            threading.Thread(target=client.sendall, args=(payload,), daemon=True).start()
        got = [bytearray() for _ in clients]
        deadline = time.monotonic() + 30
        while any(len(g) < len(p) for g, p in zip(got, payloads, strict=True)) and time.monotonic() < deadline:
            pump(a, b, 1)
            for ready in select.select(clients, [], [], 0.005)[0]:
                got[clients.index(ready)] += ready.recv(1 << 20)
        assert [bytes(g) for g in got] == payloads
        for client in clients:
            client.close()
    finally:
        a.close()
        b.close()
        server.close()


def _first_envelope(a: Tunnel) -> np.ndarray:
    client = socket.create_connection(("127.0.0.1", a.port))
    client.sendall(b"hello")
    envelope = None
    deadline = time.monotonic() + 5
    while envelope is None and time.monotonic() < deadline:
        envelope = a.drain(0.05)
    assert envelope is not None
    return envelope


def test_tunnel_refuses_tampered_replayed_and_foreign_envelopes() -> None:
    server, port = _echo_server()
    a, b = tunnel_pair(port)
    try:
        envelope = _first_envelope(a)
        tampered = envelope.copy()
        tampered[-20] ^= 1
        with pytest.raises(TunnelError, match="does not authenticate"):
            b.feed(tampered)
        b.feed(envelope)
        with pytest.raises(TunnelError, match="out of order"):
            b.feed(envelope)  # replay
        with pytest.raises(TunnelError, match="does not authenticate"):
            a.feed(envelope)  # reflected back to its sender
    finally:
        a.close()
        b.close()
        server.close()


# --- the backend end to end (starts spu) ---------------------------------------------------------------

@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.slow
@needs_spu
@pytest.mark.parametrize("fmt", ["BR%08d", "Zoé-客户-%07d-with-a-long-tail"])  # the second: > 24 bytes, non-ASCII
def test_rr22_intersection_equals_the_ecdh_backends(private_tmp: Path, fmt: str) -> None:
    a, b = sets(3000, 2500, 1200, seed=3, fmt=fmt)
    ecdh, t1 = federation({"bank": a, "pay": b})
    run_psi(t1, "run-rr22", "bank", "pay", "both")
    rr22, t2 = federation({"bank": a, "pay": b})
    outcome = run_rr22(t2, "run-rr22", "bank", "pay", "both")
    assert outcome.cardinality == 1200 and outcome.sizes == {"bank": 3000, "pay": 2500}
    assert "semi-honest" in outcome.reveals
    ids_a, ids_b = np.array(a, dtype=object), np.array(b, dtype=object)
    for name, ids in (("bank", ids_a), ("pay", ids_b)):
        peer = "pay" if name == "bank" else "bank"
        assert set(ids[rr22[name].rows[peer]]) == set(ids[ecdh[name].rows[peer]])
    assert list(ids_a[rr22["bank"].rows["pay"]]) == list(ids_b[rr22["pay"].rows["bank"]])  # one agreed order
    assert leftovers(private_tmp) == []


@pytest.mark.slow
@needs_spu
def test_rr22_star_alignment_and_label_holder_mode(private_tmp: Path) -> None:
    a, b = sets(800, 900, 400, seed=5)
    parties, transport = federation({"bank": a, "pay": b})
    outcome = align(transport, "run-rr22", "bank", ["pay"], backend="rr22")
    assert outcome.n_aligned == 400 and "RR22" in outcome.reveals
    ids_a, ids_b = np.array(a, dtype=object), np.array(b, dtype=object)
    assert list(ids_a[parties["bank"].aligned_rows]) == list(ids_b[parties["pay"].aligned_rows])
    parties, transport = federation({"bank": a, "pay": b})
    run_rr22(transport, "run-rr22", "bank", "pay", "label_holder")
    assert len(parties["bank"].rows["pay"]) == 400 and "bank" not in parties["pay"].rows
    assert leftovers(private_tmp) == []


@pytest.mark.slow
@needs_spu
def test_files_and_worker_gone_after_a_worker_failure(private_tmp: Path) -> None:
    parties, transport = federation({"bank": ["x1", "x2", "x3"], "pay": ["x2", "x3", "x4"]})
    original = transport.exchange
    killed: list[int] = []

    def exchange(messages):
        messages = list(messages)
        if messages[0].kind == "psi.rr22.pump" and not killed:  # kill the partner's worker mid-run
            session = next(iter(parties_rr22["pay"].sessions.values()))
            assert session.process is not None
            os.killpg(session.process.pid, 9)
            session.process.wait()
            killed.append(session.process.pid)
        return original(messages)

    parties_rr22 = {n: _rr22_of(transport, n) for n in ("bank", "pay")}
    transport.exchange = exchange  # type: ignore[method-assign]
    with pytest.raises(Exception, match="RR22 worker failed|no RR22 PSI session"):
        run_rr22(transport, "run-rr22", "bank", "pay")
    assert killed and leftovers(private_tmp) == []
    assert all(not p.sessions for p in parties_rr22.values())
    assert "pay" not in parties["bank"].rows


@pytest.mark.slow
@needs_spu
def test_files_and_worker_gone_after_a_timeout(private_tmp: Path) -> None:
    _, transport = federation({"bank": ["x1", "x2", "x3"], "pay": ["x2", "x3", "x4"]})
    with pytest.raises(Exception, match="did not finish in time|no RR22 PSI session"):
        run_rr22(transport, "run-rr22", "bank", "pay", timeout=0.5)
    assert leftovers(private_tmp) == []
    for name in ("bank", "pay"):
        assert not _rr22_of(transport, name).sessions


def _rr22_of(transport: InProcessTransport, name: str) -> Rr22Party:
    return RR22[id(transport)][name]


def test_a_deployed_party_answers_rr22_only_in_a_job_that_announced_it() -> None:
    from sampan.deploy.allow import JobRefused, check_request

    job = {"workflow": "vertical", "parties": ["bank", "pay"], "vertical": {"models": ["lr"]}}
    with pytest.raises(JobRefused, match="did not announce"):
        check_request(None, "pay", "psi.rr22.pump", {}, job)
    check_request(None, "pay", "psi.rr22.pump", {}, {**job, "vertical": {"models": ["lr"], "psi_backend": "rr22"}})
    check_request(None, "pay", "psi.offer", {}, job)  # ECDH as before


def test_the_job_carries_the_backend_through_its_stored_form() -> None:
    from sampan.vertical.job import VerticalJob

    job = VerticalJob(name="j", label_holder="bank", partners=("pay",), psi_backend="rr22")
    assert VerticalJob.from_dict(job.to_dict()).psi_backend == "rr22"
    assert VerticalJob.from_dict(VerticalJob(name="j", label_holder="bank", partners=("pay",)).to_dict()).psi_backend \
        == "ecdh"


@pytest.mark.slow
@needs_spu
def test_a_vertical_federation_aligns_alike_on_both_backends(private_tmp: Path) -> None:
    """Star alignment (bank + two partners: one RR22 run per partner) through the real vertical parties."""
    from sampan.vertical.capability import VERTICAL, simulate_vertical
    from sampan.vertical.job import VerticalJob
    from sampan.vertical.session import VerticalSession

    job = VerticalJob(name="wf", label_holder="bank", partners=("payments", "delivery"), seed=3,
                      source={"kind": "consortium", "n_smes": 1500, "seed": 4})
    counts = {}
    for backend in ("ecdh", "rr22"):
        setups = simulate_vertical(job, 0)
        transport = InProcessTransport({n: VERTICAL.party_app(s) for n, s in setups.items()})
        session = VerticalSession(transport, label_holder="bank", partners=["payments", "delivery"])
        session.connect()
        outcome = session.align(backend=backend)
        counts[backend] = (outcome.n_aligned, dict(outcome.cardinalities))
    assert counts["rr22"] == counts["ecdh"]
    assert leftovers(private_tmp) == []


@pytest.mark.parametrize("width", [10, 40])  # 40: ids over 24 bytes take the SHA-256 token path
def test_the_result_maps_back_to_own_rows_in_token_order(width: int) -> None:
    from sampan.vertical.psi_rr22_party import _locate, _tokens

    rng = np.random.default_rng(1)
    ids = np.array([(f"BR{i:08d}" + "x" * (width - 10)).encode() for i in rng.permutation(5000)], dtype=f"S{width}")
    found = _padded(ids[rng.choice(5000, 700, replace=False)], width)
    rows, tokens = _locate(ids, found, width, "bank")
    assert np.array_equal(_padded(ids[rows], width), _padded(ids[rows], width)) and len(rows) == 700
    assert sorted(rows.tolist()) == sorted(np.flatnonzero(np.isin(ids, found.view(f"S{width}").ravel())).tolist())
    assert np.array_equal(tokens, _tokens(_padded(ids[rows], width)))
    as_bytes = [bytes(t) for t in tokens]
    assert as_bytes == sorted(as_bytes)  # one order at both parties: ascending token bytes
    shuffled = rng.permutation(rows)  # spu's row column: the same rows and order, without sorting own ids
    with_rows = _locate(ids, _padded(ids[shuffled], width), width, "bank", rows=shuffled)
    assert np.array_equal(with_rows[0], rows) and np.array_equal(with_rows[1], tokens)
    with pytest.raises(Exception, match="does not hold"):  # a row whose id is not the found one
        _locate(ids, _padded(ids[shuffled], width), width, "bank", rows=np.roll(shuffled, 1))
    with pytest.raises(Exception, match="does not hold"):
        _locate(ids[:10], found, width, "bank")


def test_the_result_mapping_refuses_a_customer_named_twice() -> None:
    from sampan.vertical.psi_rr22_party import _locate

    ids = np.array([f"BR{i:08d}".encode() for i in range(1000)], dtype="S10")
    found = _padded(ids[[3, 7, 3]], 10)
    with pytest.raises(Exception, match="does not hold"):
        _locate(ids, found, 10, "bank")


def _sink_server() -> tuple[socket.socket, int]:
    """A local 'spu' that takes every byte and never answers (a one-way message's receiver)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            def swallow(c: socket.socket = conn) -> None:
                while c.recv(65536):
                    pass
                c.close()
            threading.Thread(target=swallow, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def test_a_fed_tunnel_stops_waiting_soon_after_its_spu_took_the_bytes() -> None:
    """The pump's `settle`: a party fed a one-way message answers the pump once its spu has taken the bytes and
    stayed quiet for `settle` seconds, not after the whole `wait` (which held the pump 50 ms per such message)."""
    server, port = _sink_server()
    a, b = tunnel_pair(port)
    try:
        envelope = _first_envelope(a)
        b.feed(envelope)
        started = time.monotonic()
        assert b.drain(2.0, settle=0.05) is None
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        assert b.drain(0.3) is None  # without settle: the whole wait
        assert time.monotonic() - started >= 0.29
    finally:
        a.close()
        b.close()
        server.close()
