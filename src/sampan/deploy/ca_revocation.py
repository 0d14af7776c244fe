"""Revocation on the consortium CA: the signed CRL (numbered one above the previous, so an older CRL put back
in place is refused by verifiers that keep the highest number they accepted), `revoke` and `refresh_crl`.

Each operation loads the CA key (its passphrase prompt) before taking the CA lock, then reads the issuance
record and writes the CRL and the record under it, so a revocation made while another operator signs is
never lost. Issuance is in `sampan.deploy.certs`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sampan.crypto.identity import crl_number
from sampan.deploy.ca_store import (
    CLOCK_SLACK,
    CAFiles,
    _ca_lock,
    _load_key,
    _read_index,
    _read_record,
    _write_index,
    write_public,
)
from sampan.deploy.cert_checks import CertError, _now, load_cert

__all__ = ["refresh_crl", "revoke"]


def _next_crl_number(files: CAFiles) -> int:
    """One above the CA's current CRL's number (1 for the first CRL, or one without a number)."""
    try:
        current = x509.load_pem_x509_crl(files.crl.read_bytes())
    except (OSError, ValueError):
        return 1
    return (crl_number(current) or 0) + 1


def _write_crl(
    files: CAFiles,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    revoked: Mapping[str, dict[str, object]],
    days: float = 30,
    *,
    number: int | None = None,
) -> None:
    """Sign and publish a CRL numbered one above the previous (call under `_ca_lock`)."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - CLOCK_SLACK)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number or _next_crl_number(files)), critical=False)
    )
    for serial, entry in revoked.items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(dt.datetime.fromisoformat(str(entry["revoked_at"])))
            .build()
        )
    crl = builder.sign(key, hashes.SHA256())
    write_public(files.crl, crl.public_bytes(serialization.Encoding.PEM))


def refresh_crl(ca_directory: str | Path, *, days: float = 30) -> Path:
    """Re-sign the CRL with a new nextUpdate (coordinators refuse to start runs on a CRL past it)."""
    files = CAFiles(Path(ca_directory))
    key = _load_key(files.key)
    with _ca_lock(files):
        revoked = {s: e for s, e in _read_index(files).items() if "revoked_at" in e}
        _write_crl(files, key, load_cert(files.cert), revoked, days)
    return files.crl


def revoke(ca_directory: str | Path, *, cert_path: str | Path | None = None, serial: str | None = None) -> Path:
    """Add a certificate (by file or hex serial) to the CRL and re-sign it."""
    files = CAFiles(Path(ca_directory))
    if (cert_path is None) == (serial is None):
        raise CertError("give either a certificate file or a serial number to revoke")
    key = format(load_cert(cert_path).serial_number, "x") if cert_path is not None else str(serial).lower()
    ca_key = _load_key(files.key)  # (a passphrase prompt: before the lock)
    with _ca_lock(files):
        index, generation = _read_record(files)
        entry = index.get(key)
        if entry is None:
            raise CertError(f"serial {key} was not issued by this CA (see {files.index})")
        entry.setdefault("revoked_at", _now().isoformat())
        revoked = {s: e for s, e in index.items() if "revoked_at" in e}
        # The CRL first: a watcher that notices the change between the two writes then cuts the member on
        # the CRL it records in the audit log, never on the issuance record alone with the old CRL logged.
        _write_crl(files, ca_key, load_cert(files.cert), revoked)
        _write_index(files, index, ca_key, generation + 1)
    return files.crl
