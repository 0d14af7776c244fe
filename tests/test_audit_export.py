"""The audit log exported for a SIEM: JSON lines verifiable offline (a tampered, dropped or reordered line is
caught: tests/attacks/test_audit_export_tamper.py), and RFC 5424 syslog over UDP and TCP (octet counting) to a
local listener."""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path

import pytest

from sampan.runtime.audit_export import SD_ID, jsonl_lines, send, syslog_messages, verify_jsonl
from sampan.runtime.store import Store


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    for name in ("fedavg", "vertical"):
        run_id = s.create_run(name=name, workflow="horizontal", seed=3, config={}, total_rounds=1)
        s.log_event(run_id, "approved", {"party": "bank_a", "spec_hash": "ab" * 32, "note": 'a "quoted" ] text'})
        s.log_event(run_id, "refused", {"party": "bank_b", "reason": "columns not covered by the approval"})
    yield s
    s.close()


def _public_key(store: Store) -> bytes:
    return store.signer.public_raw


def test_jsonl_export_verifies_offline(store: Store) -> None:
    lines = list(jsonl_lines(store))
    records = [json.loads(line) for line in lines]
    assert [r["type"] for r in records].count("event") == 6 and [r["type"] for r in records].count("head") == 2
    assert verify_jsonl(lines, [_public_key(store)]) == []
    assert verify_jsonl(lines) == []  # with the key records of the export itself


def test_syslog_messages_are_rfc5424(store: Store) -> None:
    messages = list(syslog_messages(store, hostname="coord-1"))
    event = next(m for m in messages if " audit [" in m and "approved" in m)
    assert re.match(r"<109>1 \d{4}-\d\d-\d\dT[\d:.]+\+00:00 coord-1 sampan - audit \[" + re.escape(SD_ID), event)
    assert 'kind="approved"' in event and re.search(r' hash="[0-9a-f]{64}"', event)
    quoted = next(m for m in messages if "quoted" in m)
    detail = json.loads(quoted.split(" \ufeff", 1)[1])
    assert detail["note"] == 'a "quoted" ] text'


def _udp_listener() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(60)
    return sock, sock.getsockname()[1]


def test_syslog_over_udp(store: Store) -> None:
    sock, port = _udp_listener()
    with sock:
        sent = send(syslog_messages(store), f"udp://127.0.0.1:{port}")
        received = [sock.recv(65535).decode() for _ in range(sent)]
    assert received == list(syslog_messages(store))


def test_syslog_over_tcp_with_octet_counting(store: Store) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    chunks: list[bytes] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(60)
            while data := conn.recv(65536):
                chunks.append(data)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    sent = send(syslog_messages(store), f"tcp://127.0.0.1:{port}")
    thread.join(60)  # the reader ends when the sender closes; generous for a loaded CI
    assert not thread.is_alive()
    server.close()
    stream, frames = b"".join(chunks), []
    while stream:
        length, _, rest = stream.partition(b" ")
        frames.append(rest[: int(length)].decode())
        stream = rest[int(length):]
    assert len(frames) == sent and frames == list(syslog_messages(store))


def test_bad_destination_is_a_clear_error(store: Store) -> None:
    from sampan.errors import StoreError

    with pytest.raises(StoreError, match="udp://host:port"):
        send(iter(["x"]), "http://127.0.0.1:514")


def test_cli_export_and_offline_verify(store: Store, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sampan.cli import app

    url = store.engine.url.render_as_string(hide_password=False)
    out_file = tmp_path / "audit.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["audit-log", "export", "--store", url, "--format", "jsonl", "--to", str(out_file)])
    assert result.exit_code == 0, result.output
    key = store.signer.public_raw.hex()
    assert out_file.stat().st_mode & 0o777 == 0o600  # the log names people and their decisions
    ok = runner.invoke(app, ["audit-log", "export", "--verify", str(out_file), "--public-key", key])
    assert ok.exit_code == 0 and "intact" in ok.output and "pinned" in ok.output, ok.output
    local = runner.invoke(app, ["audit-log", "export", "--verify", str(out_file), "--store", url])
    assert local.exit_code == 0 and "against the pinned audit key" in local.output, local.output  # its key file
    out_file.write_text(out_file.read_text().replace("bank_b", "bank_q"))
    bad = runner.invoke(app, ["audit-log", "export", "--verify", str(out_file), "--public-key", key])
    assert bad.exit_code == 1 and "BROKEN" in bad.output
    sock, port = _udp_listener()
    with sock:
        sent = runner.invoke(app, ["audit-log", "export", "--store", url, "--format", "syslog",
                                   "--to", f"udp://127.0.0.1:{port}"])
        assert sent.exit_code == 0, sent.output
        assert sock.recv(65535).decode().startswith("<109>1 ")


def test_cli_links_an_oidc_subject_audited(store: Store) -> None:
    pytest.importorskip("argon2")
    from typer.testing import CliRunner

    from sampan.cli import app
    from sampan.web.auth import Accounts, AuthSettings
    from sampan.web.db import create_tables

    create_tables(store.engine)
    Accounts(store.engine, AuthSettings(argon2={"time_cost": 1, "memory_cost": 1024, "parallelism": 1})
             ).create_user("alice", "analyst", password="correct horse battery staple")
    url = store.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    linked = runner.invoke(app, ["store", "link-oidc", "--store", url, "--user", "alice",
                                 "--issuer", "https://login.bank.example/", "--subject", "a-123"])
    assert linked.exit_code == 0, linked.output
    assert Accounts(store.engine).principal_for_oidc("https://login.bank.example/", "a-123").username == "alice"
    unknown = runner.invoke(app, ["store", "link-oidc", "--store", url, "--user", "nobody",
                                  "--issuer", "https://login.bank.example/", "--subject", "x"])
    assert unknown.exit_code != 0 and "nobody" in unknown.output
    assert runner.invoke(app, ["store", "link-oidc", "--store", url, "--user", "alice", "--unlink"]).exit_code == 0
    kinds = [e.kind for e in store.events("control-plane")]
    assert kinds == ["cp.oidc_linked", "cp.oidc_unlinked"]
    assert store.events("control-plane")[0].detail["actor"].startswith("cli:")


def test_export_without_the_audit_key_is_refused_not_signed_by_a_new_key(store: Store, tmp_path: Path) -> None:
    from sampan.errors import StoreError

    url = store.engine.url.render_as_string(hide_password=False)
    elsewhere = Store.open(url, audit_key=tmp_path / "not-here.pem")
    try:
        with pytest.raises(StoreError, match="audit key"):
            list(jsonl_lines(elsewhere))
        assert not (tmp_path / "not-here.pem").exists()
    finally:
        elsewhere.close()
