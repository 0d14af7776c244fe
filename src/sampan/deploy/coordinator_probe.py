"""The party's check of the coordinator before it dials gRPC (`probe_coordinator`): one plain TLS handshake.

It checks the coordinator's certificate (CA chain, role, expected name, key pin, CRL) and turns a refusal of
this party's own certificate (a TLS alert, which gRPC reports only as "connection closed") into a message
that says so. The coordinator-side checks (`CertificateAuthenticator`, CRL and issuance-record reading) are in
`sampan.deploy.cert_checks`; both are re-exported by `sampan.deploy.certs`.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from cryptography import x509

from sampan.deploy.cert_checks import CertError, _CRLCache, _now, cert_identity, describe_cert, load_cert, spki_pin
from sampan.deploy.keyfiles import KeyFileError, check_key_mode, is_encrypted, passphrase_for
from sampan.files import HighWater
from sampan.transport.grpc_hub import AuthenticationError

__all__ = ["probe_coordinator"]


def probe_coordinator(
    host: str,
    port: int,
    *,
    ca: Path,
    cert: Path,
    key: Path,
    server_name: str,
    expected_name: str | None = None,
    pin: str | None = None,
    crl: Path | None = None,
    timeout: float = 5.0,
    state: Path | None = None,
) -> dict[str, str]:
    """Before dialing gRPC: check the coordinator's certificate (role, name, pin, CRL) with a plain TLS handshake.

    Also tells this party, in words, when the coordinator refuses *its* certificate (TLS alert),
    which gRPC would only report as "connection closed". Raises AuthenticationError or OSError.
    """
    own = load_cert(cert)
    now = _now()
    if not own.not_valid_before_utc <= now <= own.not_valid_after_utc:
        raise AuthenticationError(
            "expired",
            f"this party's certificate is valid only from {own.not_valid_before_utc} "
            f"to {own.not_valid_after_utc}; ask the consortium CA for a new one",
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca))
    try:
        check_key_mode(Path(key), "this member's private key")
    except KeyFileError as exc:
        raise CertError(str(exc)) from None
    encrypted = is_encrypted(Path(key).read_bytes())
    context.load_cert_chain(
        certfile=str(cert), keyfile=str(key), password=(lambda: passphrase_for(Path(key))) if encrypted else None
    )
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                tls.settimeout(0.5)
                try:
                    data = tls.recv(1)  # TLS 1.3: a refused client certificate arrives as an alert after the handshake
                except ssl.SSLError as exc:
                    raise AuthenticationError(
                        "refused_by_coordinator", f"the coordinator refused this party's certificate: {exc.reason}"
                    ) from None
                except TimeoutError:
                    data = None
                except OSError:  # reset right after the handshake
                    data = b""
                if data == b"":
                    raise AuthenticationError(
                        "refused_by_coordinator",
                        "the coordinator closed the connection right "
                        "after the TLS handshake: it refused this party's certificate (another "
                        "CA, or not accepted there); its log says why",
                    )
        except ssl.SSLCertVerificationError as exc:
            raise AuthenticationError(
                "coordinator_untrusted", f"coordinator certificate not trusted: {exc.verify_message}"
            ) from None
    assert der is not None
    peer = x509.load_der_x509_certificate(der)
    name, role = cert_identity(peer)
    if role != "coordinator":
        raise AuthenticationError("wrong_role", f"{host}:{port} presents a {role} certificate, not a coordinator's")
    if expected_name and name != expected_name:
        raise AuthenticationError("wrong_identity", f"{host}:{port} is {name!r}, expected {expected_name!r}")
    if pin and spki_pin(peer) != pin.lower():
        raise AuthenticationError(
            "pin_mismatch", f"coordinator key {spki_pin(peer)[:19]}… is not the pinned {pin[:19]}…"
        )
    if crl is not None and _CRLCache(crl, load_cert(ca), HighWater(state)).revoked(peer.serial_number):
        raise AuthenticationError("revoked", f"the coordinator's certificate {peer.serial_number:x} is revoked")
    return describe_cert(peer)
