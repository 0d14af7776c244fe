"""R16-API-12 / R16-API-13: VerifierCA's bad-certificate matrix and its key hygiene.

- API-12: the "wrong_ca" variant is issued by a CA *named* "Not the consortium CA", and "self_signed" names
  itself as issuer, so every bad variant differs from the consortium CA by issuer *name*. A platform that checks
  the issuer name (or looks the issuer up by name and skips the signature) refuses all of them and passes
  S-TLS-WRONG-CA; the case that tells a real chain check from a name check (a certificate naming the consortium CA
  as issuer, signed by another key: an impostor CA with the same subject) is not in the matrix.
- API-13: IssuedCert is a dataclass whose repr prints `key_pem`: any log line, assertion message or evidence
  dict that shows an IssuedCert (or a structure holding one) prints the party's private key.
Fixed: these are regular tests now."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from sampan.verify.pki import VerifierCA


def test_matrix_has_an_impostor_issuer_variant(tmp_path: Path) -> None:
    ca = VerifierCA(tmp_path / "pki")
    impostors = []
    for variant, issued in ca.variants("verifier").items():
        cert = issued.certificate
        if cert.issuer != ca.certificate.subject:
            continue
        try:
            ca.certificate.public_key().verify(  # type: ignore[union-attr, call-arg]
                cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
        except InvalidSignature:
            impostors.append(variant)
    assert impostors, "every variant that names the consortium CA as issuer really is signed by it"


def test_repr_of_an_issued_cert_hides_the_key(tmp_path: Path) -> None:
    issued = VerifierCA(tmp_path / "pki").client_cert("verifier")
    body = issued.key_pem.strip().splitlines()[1]
    shown = repr(issued) + str(issued) + repr([issued])
    assert body not in shown and "PRIVATE KEY" not in shown, "repr/str of an IssuedCert shows its private key"
