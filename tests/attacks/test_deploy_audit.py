"""Finding 18: refused peers, connections and revocations are in the signed audit log, rate-limited.

On commit 1064fb2 refusals went only to a plain-text log (TLS refusals without a peer address). Now the
coordinator writes every connection, every refusal (peer address, reason) and every revocation to its
store's signed, hash-chained audit log (chain ``security``), which `sampan audit-log verify` checks;
a peer that keeps knocking gets a bounded number of entries per window, and one entry saying it was
rate-limited. (TLS-layer refusals are recorded by the `coordinator serve` CLI from gRPC's log, without
a peer address, which gRPC does not report: see tests/test_deploy_e2e.py.)
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from _deploy_federation import ThreadFederation, wait_until
from typer.testing import CliRunner

from sampan.cli import app
from sampan.deploy.certs import create_request, load_cert, revoke, sign_request
from sampan.deploy.security_audit import SecurityAudit
from sampan.runtime.store import Store
from sampan.transport.grpc_client import channel_options
from sampan.transport.grpc_envelope import CONNECT, Limits

pytestmark = pytest.mark.slow


def _knock(fed: ThreadFederation, cert: Path, key: Path) -> grpc.StatusCode | None:
    creds = grpc.ssl_channel_credentials(fed.files.operator["ca"].read_bytes(), key.read_bytes(), cert.read_bytes())
    with grpc.secure_channel(fed.files.address, creds, options=channel_options(Limits(), "localhost")) as channel:
        try:
            list(channel.stream_stream(CONNECT)(iter([b"x"]), timeout=10))
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined, no-any-return]
    return None


def test_refusals_connections_and_revocations_are_signed_audit_entries(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path)
    try:
        root = fed.files.root
        _, csr = create_request("intruder", "party", root / "intruder")
        sign_request(csr, fed.files.ca_dir)
        for _ in range(40):  # a CA-signed non-member knocking again and again
            code = _knock(fed, root / "intruder" / "intruder.crt", root / "intruder" / "intruder.key")
            assert code == grpc.StatusCode.PERMISSION_DENIED
        revoke(fed.files.ca_dir, cert_path=root / "bank_kowloon" / "bank_kowloon.crt")
        assert wait_until(lambda: "bank_kowloon" not in fed.coordinator.hub.connected())
        # `revoke` writes the issuance record, then the CRL. A watcher tick between the two writes records the
        # reload (CRL serials without kowloon) and cuts the stream, its re-check reading the new files; the CRL
        # load is recorded at the next tick (crl_check_s later). Reading the log right after the cut missed it
        # in ~1 of 18 runs: wait for the watcher to have recorded the revoked serial.
        serial = format(load_cert(root / "bank_kowloon" / "bank_kowloon.crt").serial_number, "x")
        store = fed.coordinator.store

        def crl_load_recorded() -> bool:
            fed.coordinator.security.flush()
            return any(serial in e.detail["revoked_serials"] for e in store.events("security")
                       if e.kind == "revocation_data_loaded")

        assert wait_until(crl_load_recorded)
        fed.coordinator.security.flush()

        entries = [(e.kind, dict(e.detail)) for e in store.events("security")]
        connected = {d["party"] for k, d in entries if k == "peer_connected"}
        assert connected == {"bank_harbour", "bank_kowloon", "bank_lionrock"}
        refused = [d for k, d in entries if k == "peer_refused" and d["code"] == "not_a_member"]
        assert refused and all(d["peer"].startswith("ipv4:127.0.0.1:") for d in refused)
        assert "intruder" in refused[0]["who"] and "not a member" in refused[0]["reason"]
        assert len(refused) <= 20 < 40                                        # rate-limited per peer host
        assert [d["peer"] for k, d in entries if k == "rate_limited"] == ["ipv4:127.0.0.1"]
        cut = [d for k, d in entries if k == "stream_cut"]
        assert [d["party"] for d in cut] == ["bank_kowloon"] and cut[0]["code"] == "revoked"
        loaded = [d for k, d in entries if k == "revocation_data_loaded"]
        assert any(serial in d["revoked_serials"] for d in loaded)
        assert store.verify_audit("security").ok
    finally:
        fed.close()
    url = fed.coordinator.config.store_url
    result = CliRunner().invoke(app, ["audit-log", "verify", "--store", url])
    assert result.exit_code == 0 and "audit log intact" in result.output, result.output


def test_a_flood_of_refusals_cannot_flood_the_audit_log(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    now = [0.0]
    audit = SecurityAudit(store, per_peer=5, window_s=60, clock=lambda: now[0])
    for i in range(1000):
        audit.record("peer_refused", {"peer": f"ipv4:10.0.0.9:{40000 + i}", "code": "not_a_member"})
    audit.record("peer_refused", {"peer": "ipv4:10.0.0.10:1", "code": "revoked"})  # another peer is not drowned
    now[0] = 61.0
    audit.record("peer_refused", {"peer": "ipv4:10.0.0.9:1", "code": "not_a_member"})
    audit.close()
    entries = [(e.kind, dict(e.detail)) for e in store.events("security")]
    assert len(entries) == 5 + 1 + 1 + 1
    assert entries[-1][1]["dropped_before"] == 995 and entries[5][0] == "rate_limited"
    assert store.verify_audit().ok
    store.close()


def test_the_audit_queue_is_bounded_and_counts_what_it_drops() -> None:
    """Many peers at once (each under its own rate) faster than the store writes: the queue no longer grows
    without bound; the entries it drops are counted in one `queue_overflow` entry."""
    import threading

    gate = threading.Event()
    written: list[tuple[str, dict]] = []

    class SlowStore:
        def log_event(self, run_id: str, kind: str, detail: dict) -> None:
            gate.wait(10)
            written.append((kind, dict(detail)))

    audit = SecurityAudit(SlowStore(), per_peer=5, max_queue=10)  # type: ignore[arg-type]
    accepted = sum(audit.record("peer_refused", {"code": "x"}, peer=f"ipv4:10.0.{i // 250}.{i % 250}:1")
                   for i in range(1000))
    assert accepted <= 11                                             # the queue, plus the one being written
    gate.set()
    audit.flush()
    overflow = [d for k, d in written if k == "queue_overflow"]
    assert overflow and sum(d["dropped"] for d in overflow) == 1000 - accepted
    audit.close()
