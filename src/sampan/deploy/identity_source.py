"""Where a party agent's organisation identity comes from: its TLS key file, or a key held in an HSM (PKCS#11).

Why a separate signing certificate with an HSM: the agent's mutual-TLS key must be a PEM file (gRPC's
TLS takes no PKCS#11 key), but the key that binds the organisation — the signatures on its per-run
protocol keys and on its approvals — can stay in the bank's HSM. With `[hsm]` in party.toml, that key
is generated in the token (`sampan certs hsm-keygen`), the CA issues it a signing-only certificate
(`sampan certs sign --signing-only`: same member name and role, extended key usage documentSigning, so
it can never serve as a TLS certificate, and the coordinator's key pin stays the TLS key's), and every
signature the agent makes with its identity is made by the token. The PIN comes from `pin_file` (0600)
or the environment variable `pin_env`; a PIN in party.toml itself is refused (there is no key for it).

Who enforces that the HSM key is the only one (R14-ENT-1): once the CA issued a name a signing certificate,
its peers and the coordinator accept that name's signatures (run keys, approvals) only from a signing
certificate, never from its TLS certificate (whose key file a thief could copy). They learn which names have
one from the CA's signed issuance record (`tls.issued` = a copy of the CA's issued.json: the coordinator has
it already; give every party one too, refreshed like the CRL), read by `load_verifier`. A verifier without
the record cannot tell and accepts TLS-certificate signatures, as before.

    [hsm]
    module = "/usr/lib/softhsm/libsofthsm2.so"   # the PKCS#11 module of the HSM
    token_label = "bank-a"
    key_label = "bank-a-org"
    certificate = "bank-a-signing.crt"             # issued by the consortium CA for the token's key
    pin_file = "hsm.pin"                           # or: pin_env = "SAMPAN_HSM_PIN"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sampan.errors import ConfigError

__all__ = ["HsmSection", "load_identity", "read_pin", "pkcs11_key", "load_verifier", "issued_signing_names"]


class HsmSection(BaseModel):
    """[hsm] of party.toml: the organisation's signing key in a PKCS#11 token (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module: str = Field(description="path of the HSM's PKCS#11 module (.so)")
    token_label: str = Field(min_length=1, max_length=32, description="label of the token holding the key")
    key_label: str = Field(min_length=1, max_length=128, description="label of the key pair in the token")
    certificate: str | None = Field(None, description="the CA's signing-only certificate for the token's key (PEM)")
    pin_file: str | None = Field(None, description="file holding the user PIN (0600); never the PIN itself here")
    pin_env: str | None = Field(None, description="environment variable holding the user PIN")

    @model_validator(mode="after")
    def _one_pin_source(self) -> HsmSection:
        if (self.pin_file is None) == (self.pin_env is None):
            raise ValueError("set exactly one of pin_file or pin_env (the PIN itself never goes in party.toml)")
        return self


def read_pin(section: HsmSection, *, who: str = "party") -> str:
    """The user PIN from its file (owner-only, like a key file) or environment variable."""
    if section.pin_env is not None:
        value = os.environ.get(section.pin_env)
        if not value:
            raise ConfigError(f"{who}: hsm.pin_env names ${section.pin_env}, which is not set")
        return value
    from sampan.deploy.keyfiles import check_key_mode

    path = Path(str(section.pin_file))
    check_key_mode(path, what=f"{who}'s HSM PIN file")
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ConfigError(f"{who}: the HSM PIN file {str(path)!r} is empty")
    return value


def pkcs11_key(section: HsmSection, *, who: str = "party") -> Any:
    from sampan.crypto.hsm import Pkcs11Key

    return Pkcs11Key(section.module, section.token_label, section.key_label, read_pin(section, who=who))


def load_identity(config: Any) -> Any:
    """The party's organisation identity: an `HsmIdentity` when party.toml has `[hsm]`, else the TLS key file's
    `PartyIdentity`. Either signs with ECDSA P-256 / SHA-256, so peers verify both alike. Its certificate must
    name this party."""
    from sampan.crypto.identity import PartyIdentity
    from sampan.deploy.keyfiles import KeyFileError, unencrypted_pem

    name, tls, hsm = config.party.name, config.tls, getattr(config, "hsm", None)
    try:
        if hsm is not None:
            from sampan.crypto.hsm import HsmIdentity

            if not hsm.certificate:
                raise ConfigError(f"party {name!r}: hsm.certificate is not set (the CA's signing certificate for "
                                  f"the key in token {hsm.token_label!r}; see `sampan certs hsm-keygen`)")
            identity: Any = HsmIdentity(pkcs11_key(hsm, who=f"party {name!r}"), Path(hsm.certificate).read_bytes())
            source = hsm.certificate
        else:
            identity = PartyIdentity.from_pem(Path(tls.cert).read_bytes(),
                                              unencrypted_pem(tls.key, what=f"{name}'s private key"))
            source = tls.cert
    except OSError as exc:
        raise ConfigError(f"party {name!r}: cannot read its certificate: {exc}") from None
    except KeyFileError as exc:
        raise ConfigError(f"party {name!r}: {exc}") from None
    if identity.name != name:
        if hasattr(identity, "close"):
            identity.close()  # an HSM session and login are not left open
        raise ConfigError(f"party {name!r}: its certificate {source} is issued to {identity.name!r}")
    return identity


def issued_signing_names(issued: str | Path, ca: str | Path, state: str | Path | None = None) -> Any:
    """A callable giving the names with an organisation signing certificate, from the CA's signed issuance
    record at `issued` (signature checked, re-read when it changes, its generation never going back: kept in
    `state`)."""
    from sampan.deploy.cert_checks import IssuedRecord, load_cert
    from sampan.files import HighWater

    record = IssuedRecord(Path(issued), load_cert(ca), HighWater(state))

    def names() -> frozenset[str]:
        from sampan.crypto.identity import IdentityError
        from sampan.transport.grpc_session import AuthenticationError

        try:
            return record.signing_names()
        except AuthenticationError as exc:  # an unreadable or rolled-back record: no signature is accepted
            raise IdentityError(None, "bad_issued", str(exc)) from None

    names()  # a bad record is refused now, not at the first signature
    return names


def load_verifier(tls: Any, state: str | Path | None = None) -> Any:
    """The `IdentityVerifier` for a `[tls]` section: CA, CRL (re-read at every check) and, when `tls.issued` is
    set, the CA's issuance record, so a name with an HSM signing certificate signs only with it."""
    from sampan.crypto.identity import IdentityVerifier

    issued = getattr(tls, "issued", None)
    names = issued_signing_names(issued, tls.ca, state) if issued else None
    return IdentityVerifier.from_files(tls.ca, tls.crl, state=state, signing_names=names)
