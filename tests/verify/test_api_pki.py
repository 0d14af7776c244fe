"""VerifierCA: every variant loads, and a TLS server trusting the CA (+ its CRL) refuses all but the good one."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from sampan.verify.pki import VARIANTS, VerifierCA
from sampan.verify.serve_local import ServerTLS


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> VerifierCA:
    return VerifierCA(tmp_path_factory.mktemp("vca") / "pki")


def test_files_are_private_and_load(ca: VerifierCA) -> None:
    assert stat.S_IMODE(ca.folder.stat().st_mode) == 0o700
    for variant, issued in ca.variants("verifier").items():
        assert issued.variant == variant
        assert stat.S_IMODE(issued.key_file.stat().st_mode) == 0o600
        loaded = x509.load_pem_x509_certificate(issued.cert_file.read_bytes())
        assert loaded == issued.certificate
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(*issued.files)
    crl = x509.load_pem_x509_crl(Path(ca.crl_file).read_bytes())
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    ssl.create_default_context(cadata=ca.ca_pem)


def _handshake(tls: ServerTLS, client_files: tuple[str, str] | None, ca_pem: str) -> tuple[bool, str]:
    """One TLS connection; returns (the server accepted the client, the server's reason if not)."""
    server_ctx = tls.context()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(4)
                tls_conn.sendall(b"pong")
                outcome.append("ok")
        except (ssl.SSLError, OSError) as exc:
            outcome.append(getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc))
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cadata=ca_pem)
    if client_files:
        client_ctx.load_cert_chain(*client_files)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"ping")
            conn.recv(4)
    except (ssl.SSLError, OSError):
        pass
    thread.join(5)
    return outcome == ["ok"], (outcome or ["?"])[0]


def test_mtls_server_refuses_every_bad_variant(ca: VerifierCA) -> None:
    server = ca.server_cert("127.0.0.1")
    tls = ServerTLS(server.cert_file, server.key_file, client_ca=ca.ca_file, crl=ca.crl_file)
    variants = ca.variants("verifier")  # issuing "revoked" rewrites crl.pem before the server loads it
    reasons: dict[str, str] = {}
    for variant in VARIANTS:
        accepted, reason = _handshake(tls, variants[variant].files, ca.ca_pem)
        assert accepted == (variant == "good"), (variant, reason)
        reasons[variant] = reason.upper()
    accepted, reasons["none"] = _handshake(tls, None, ca.ca_pem)
    assert not accepted
    assert "EXPIRED" in reasons["expired"] and "REVOKED" in reasons["revoked"], reasons
    assert "NOT YET VALID" in reasons["not_yet_valid"], reasons
    assert "ISSUER" in reasons["wrong_ca"] and "SELF-SIGNED" in reasons["self_signed"], reasons
    assert "CERTIFICATE" in reasons["none"], reasons


def test_revoking_later_takes_effect_on_a_reloaded_crl(ca: VerifierCA) -> None:
    server = ca.server_cert()
    party = ca.client_cert("late")
    tls = ServerTLS(server.cert_file, server.key_file, client_ca=ca.ca_file, crl=ca.crl_file)
    assert _handshake(tls, party.files, ca.ca_pem)[0]
    ca.revoke(party)
    assert not _handshake(tls, party.files, ca.ca_pem)[0]  # tls.context() re-reads crl.pem


@pytest.mark.parametrize("variant", ["wrong_ca", "expired", "self_signed"])
def test_clients_refuse_bad_server_certificates(ca: VerifierCA, variant: str) -> None:
    server = ca.server_cert(variant=variant)  # type: ignore[arg-type]
    accepted, _ = _handshake(ServerTLS(server.cert_file, server.key_file), None, ca.ca_pem)
    assert not accepted


def test_server_cert_names_the_host(ca: VerifierCA) -> None:
    server = ca.server_cert("bank.example")
    san = server.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "bank.example" in san.get_values_for_type(x509.DNSName)
    with pytest.raises(ValueError, match="variant"):
        ca.issue("x", variant="bogus")  # type: ignore[arg-type]


def test_a_temp_folder_of_keys_is_removed_on_close() -> None:
    with VerifierCA() as temporary:
        key = temporary.client_cert("p").key_file
        assert key.exists()
    assert not temporary.folder.exists()
