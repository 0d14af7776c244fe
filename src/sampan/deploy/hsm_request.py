"""`sampan certs hsm-keygen`: a member's organisation key made inside its HSM, and a CSR for it signed by the token.

The counterpart of `certs.create_request` for a key that must never exist outside the token: same subject
(CN = member name, OU = role, O = organisation) and the same Sampan URI name, so the CA's `sign_request`
checks it the same way. The CA issues it with `signing_only=True` (`sampan certs sign --signing-only`):
a certificate for signatures (documentSigning), beside the member's TLS certificate.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from sampan.crypto.hsm import Pkcs11Key, certificate_request, check_key, generate_key
from sampan.deploy.ca_store import URI_PREFIX, _check_name, _check_role, write_public
from sampan.deploy.cert_checks import CertError

__all__ = ["create_hsm_request"]


def create_hsm_request(key: Pkcs11Key, name: str, role: str, directory: str | Path, *,
                       organisation: str | None = None, generate: bool = True) -> Path:
    """Generate the key pair in the token (unless `generate` is False: use the one already under the label, only
    if the token keeps it sensitive and never extractable) and write `<name>-signing.csr`; returns the CSR's
    path. Only public material is written."""
    _check_name(name)
    _check_role(role)
    out = Path(directory) / f"{name}-signing.csr"
    if out.exists():
        raise CertError(f"{out} exists; refusing to overwrite a CSR")
    if generate:
        generate_key(key)
    else:
        check_key(key)  # the key must be there, sensitive and never extractable
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]
    if organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}:{name}")])
    pem = certificate_request(key, x509.Name(attrs), [x509.Extension(san.oid, False, san)])
    Path(directory).mkdir(parents=True, exist_ok=True)
    write_public(out, pem)
    return out
