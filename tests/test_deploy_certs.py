"""Certificates (CLI and checks), agent configs, and the logging of TLS-layer refusals."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from sampan.cli.deploy import certs_app
from sampan.config import ConfigError
from sampan.deploy.certs import (
    CertError,
    CertificateAuthenticator,
    create_request,
    init_ca,
    load_cert,
    probe_coordinator,
    revoke,
    sign_request,
    spki_pin,
)
from sampan.deploy.config import load_coordinator_config, load_party_config, load_run_spec, parse_run_spec
from sampan.deploy.grpclog import handshake_reason
from sampan.transport.grpc_hub import AuthenticationError, Hub, HubSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "deploy"
runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_makes_a_ca_keys_locally_signs_and_revokes(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    result = runner.invoke(certs_app, ["init", "--dir", str(ca)])
    assert result.exit_code == 0, result.output
    assert _mode(ca / "ca.key") == 0o600 and (ca / "ca.crt").exists() and (ca / "crl.pem").exists()
    assert runner.invoke(certs_app, ["init", "--dir", str(ca)]).exit_code == 2  # never overwrites a CA key

    bank = tmp_path / "bank_a"
    result = runner.invoke(certs_app, ["request", "bank_a", "--role", "party", "--dir", str(bank)])
    assert result.exit_code == 0, result.output
    assert _mode(bank / "bank_a.key") == 0o600 and "PRIVATE" not in (bank / "bank_a.csr").read_text()
    result = runner.invoke(certs_app, ["sign", str(bank / "bank_a.csr"), "--ca-dir", str(ca), "--days", "30"])
    assert result.exit_code == 0, result.output
    cert = load_cert(bank / "bank_a.crt")
    assert f'pin = "{spki_pin(cert)}"' in result.output.replace("\n", "")
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert dt.timedelta(days=29) < cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=31)
    assert "bank_a" in runner.invoke(certs_app, ["show", str(bank / "bank_a.crt")]).output

    coordinator = tmp_path / "coordinator"
    runner.invoke(certs_app, ["request", "coordinator", "--role", "coordinator", "--dir", str(coordinator),
                              "--dns", "sampan.example.hk", "--ip", "127.0.0.1"])
    runner.invoke(certs_app, ["sign", str(coordinator / "coordinator.csr"), "--ca-dir", str(ca)])
    ccert = load_cert(coordinator / "coordinator.crt")
    sans = ccert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["sampan.example.hk"]
    assert ccert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])

    result = runner.invoke(certs_app, ["revoke", str(bank / "bank_a.crt"), "--ca-dir", str(ca)])
    assert result.exit_code == 0, result.output
    crl = x509.load_pem_x509_crl((ca / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert crl.is_signature_valid(load_cert(ca / "ca.crt").public_key())  # type: ignore[arg-type]
    result = runner.invoke(certs_app, ["crl", "--ca-dir", str(ca), "--days", "2"])
    assert result.exit_code == 0, result.output
    fresh = x509.load_pem_x509_crl((ca / "crl.pem").read_bytes())
    assert fresh.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert fresh.next_update_utc is not None
    assert dt.timedelta(days=1) < fresh.next_update_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(days=2)


def test_requests_and_signing_refuse_bad_input(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    for name, role in (("bad name", "party"), ("ok", "admin"), ("-dash", "party")):
        with pytest.raises(CertError):
            create_request(name, role, tmp_path / "x")
    _, csr = create_request("bank_b", "party", tmp_path / "b")
    with pytest.raises(CertError, match="refusing to overwrite"):
        create_request("bank_b", "party", tmp_path / "b")
    pem = csr.read_text()
    lines = pem.splitlines()
    middle = len(lines) // 2
    lines[middle] = lines[middle][:10] + ("A" if lines[middle][10] != "A" else "B") + lines[middle][11:]
    (tmp_path / "tampered.csr").write_text("\n".join(lines) + "\n")
    with pytest.raises(CertError):
        sign_request(tmp_path / "tampered.csr", tmp_path / "ca")
    with pytest.raises(CertError, match="not issued by this CA"):
        revoke(tmp_path / "ca", serial="abc")


def _issue(tmp_path: Path, ca_dir: Path, name: str, role: str = "party", **kw: object) -> x509.Certificate:
    folder = tmp_path / f"{name}-{role}-{len(list(tmp_path.iterdir()))}"
    _, csr = create_request(name, role, folder)
    return load_cert(sign_request(csr, ca_dir, **kw))  # type: ignore[arg-type]


def test_the_authenticator_checks_ca_validity_revocation_role_membership_and_pins(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    other = init_ca(tmp_path / "other")
    members = {"bank_a": "party", "bank_b": "party", "ops": "operator"}
    auth = CertificateAuthenticator(ca.cert, crl=ca.crl, members=members, pins_file=tmp_path / "pins.json",
                                    issued=ca.index)
    good = _issue(tmp_path, ca.directory, "bank_a")
    assert auth.verify(good).name == "bank_a" and auth.verify(good).role == "party"
    assert not (tmp_path / "pins.json").exists()  # pins come from the CA's record, nothing is trusted on first use

    now = dt.datetime.now(dt.UTC)
    cases = {
        "unknown_ca": _issue(tmp_path, other.directory, "bank_b"),
        "expired": _issue(tmp_path, ca.directory, "bank_b", not_before=now - dt.timedelta(days=9),
                          not_after=now - dt.timedelta(days=1)),
        "not_yet_valid": _issue(tmp_path, ca.directory, "bank_b", not_before=now + dt.timedelta(days=1), rekey=True),
        "not_a_member": _issue(tmp_path, ca.directory, "bank_z"),
        "wrong_role": _issue(tmp_path, ca.directory, "bank_b", "operator", rekey=True),
    }
    for code, cert in cases.items():
        with pytest.raises(AuthenticationError) as info:
            auth.verify(cert)
        assert info.value.code == code, (code, str(info.value))

    pinned = CertificateAuthenticator(ca.cert, members=members, pins={"bank_b": "sha256:" + "0" * 64})
    with pytest.raises(AuthenticationError, match="pinned"):
        pinned.verify(_issue(tmp_path, ca.directory, "bank_b", rekey=True))
    with pytest.raises(AuthenticationError, match="never trusted on first use"):
        CertificateAuthenticator(ca.cert, members=members).verify(good)
    revoked = _issue(tmp_path, ca.directory, "bank_b", rekey=True)
    assert auth.verify(revoked).name == "bank_b"
    revoke(ca.directory, serial=format(revoked.serial_number, "x"))
    with pytest.raises(AuthenticationError) as info:
        auth.verify(revoked)
    assert info.value.code == "revoked"
    with pytest.raises(AuthenticationError, match="mutual TLS"):
        auth.authenticate(None, "ipv4:1.2.3.4:5")


def test_a_party_probes_the_coordinator_and_learns_why_it_is_refused(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    _, csr = create_request("coordinator", "coordinator", tmp_path / "c", dns=["localhost"])
    ccrt = sign_request(csr, ca.directory)
    hub = Hub(HubSettings(), CertificateAuthenticator(ca.cert, members={"bank_a": "party"}), {"bank_a": "party"})
    creds = grpc.ssl_server_credentials([((tmp_path / "c" / "coordinator.key").read_bytes(), ccrt.read_bytes())],
                                        root_certificates=ca.cert.read_bytes(), require_client_auth=True)
    port = hub.start("127.0.0.1:0", creds)
    try:
        key, csr = create_request("bank_a", "party", tmp_path / "a")
        cert = sign_request(csr, ca.directory)
        info = probe_coordinator("127.0.0.1", port, ca=ca.cert, cert=cert, key=key, server_name="localhost",
                                 expected_name="coordinator", pin=spki_pin(load_cert(ccrt)))
        assert info["role"] == "coordinator"
        with pytest.raises(AuthenticationError, match="pinned"):
            probe_coordinator("127.0.0.1", port, ca=ca.cert, cert=cert, key=key, server_name="localhost",
                              pin="sha256:" + "1" * 64)
        with pytest.raises(AuthenticationError, match="expected 'hub'"):
            probe_coordinator("127.0.0.1", port, ca=ca.cert, cert=cert, key=key, server_name="localhost",
                              expected_name="hub")
        now = dt.datetime.now(dt.UTC)
        old = sign_request(csr, ca.directory, out=tmp_path / "a" / "old.crt", not_before=now - dt.timedelta(days=9),
                           not_after=now - dt.timedelta(days=1))
        with pytest.raises(AuthenticationError, match="this party's certificate is valid only"):
            probe_coordinator("127.0.0.1", port, ca=ca.cert, cert=old, key=key, server_name="localhost")
        other = init_ca(tmp_path / "other")  # a certificate the coordinator's TLS layer refuses
        stranger = sign_request(csr, other.directory, out=tmp_path / "a" / "stranger.crt")
        with pytest.raises(AuthenticationError, match="refused this party's certificate"):
            probe_coordinator("127.0.0.1", port, ca=ca.cert, cert=stranger, key=key, server_name="localhost")
    finally:
        hub.stop(0.1)


def test_grpc_core_handshake_lines_become_plain_reasons() -> None:
    line = ("I1122 17:26:31.928076   12704 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: "
            "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: {}")
    assert handshake_reason(line.format("certificate has expired")) == ("expired", "client certificate has expired")
    assert handshake_reason(line.format("unable to get local issuer certificate"))[0] == "unknown_ca"  # type: ignore[index]
    assert handshake_reason(line.format("something new"))[1].endswith("something new")  # type: ignore[index]
    assert handshake_reason("2026-11-22 WARNING sampan: TLS handshake refused (expired)") is None


def test_example_configs_load_and_run_files_keep_data_bindings_out(tmp_path: Path) -> None:
    coordinator = load_coordinator_config(EXAMPLES / "coordinator.toml")
    assert [m.name for m in coordinator.members][:1] == ["bank_harbour"]
    assert coordinator.store_url.startswith("sqlite:////") and coordinator.tls.ca.startswith("/")
    party = load_party_config(EXAMPLES / "party.toml")
    assert party.data["sme_loans"].schema_.features[-1].categories
    assert Path(party.data["sme_loans"].path).is_absolute()
    horizontal = load_run_spec(EXAMPLES / "run-horizontal.toml")
    vertical = load_run_spec(EXAMPLES / "run-vertical.toml")
    assert horizontal.config.run.rounds == 20 and "parties" not in horizontal.stored
    assert vertical.vertical is not None and vertical.deploy.label_holder == "bank"
    with pytest.raises(ConfigError, match="no data binding"):
        parse_run_spec({"run": {"rounds": 2}, "source": {"kind": "consortium"}})
    with pytest.raises(ConfigError, match="label_holder"):
        parse_run_spec({"deploy": {"workflow": "vertical"}})
    with pytest.raises(ConfigError, match="learning_rat"):
        parse_run_spec({"training": {"learning_rat": 0.1}})
    bad = tmp_path / "c.toml"
    bad.write_text('[tls]\nca = "a"\ncert = "b"\nkey = "c"\n[[members]]\nname = "x"\nrole = "admin"\n')
    with pytest.raises(ConfigError, match="members.0.role"):
        load_coordinator_config(bad)
