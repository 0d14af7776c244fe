"""R14-ENT-1: with [hsm], a member's organisation signatures (run keys, approvals) are meant to come only from the
key held in its token (sampan.crypto.hsm threat model: an attacker with this machine's files cannot sign as the
organisation). But the member's mutual-TLS key is a PEM file on that same machine, and its clientAuth
certificate is still accepted by `IdentityVerifier.verify` as the organisation's signature: whoever copies
bank_a.key signs bank_a's per-run keys (a key substitution the HSM was there to stop).

The signing-only certificate is issued to a file key here (the CA cannot tell; SoftHSM is not needed to show
that the verifier never asks for it).

Fixed by giving the verifier the CA's signed issuance record (`signing_names`): the repro's verifier was built
from the CA certificate alone, which cannot say who holds a signing certificate; with the record it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.crypto.identity import IdentityError, IdentityVerifier, PartyIdentity, sign_keys, verify_keys
from sampan.deploy.certs import create_request, init_ca, load_cert, sign_request
from sampan.deploy.identity_source import issued_signing_names


def test_tls_key_cannot_sign_run_keys_once_the_member_has_an_hsm_signing_certificate(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    tls_key, tls_csr = create_request("bank_a", "party", tmp_path / "bank_a")
    tls_cert = sign_request(tls_csr, ca.directory)
    signing_key, signing_csr = create_request("bank_a", "party", tmp_path / "bank_a_hsm")  # the token's key
    signing_cert = sign_request(signing_csr, ca.directory, signing_only=True)  # bank_a now signs through its HSM

    thief = PartyIdentity.from_pem(tls_cert.read_bytes(), tls_key.read_bytes())  # copied from the agent's disk
    forged_keys = {"x25519": b"\x01" * 32}  # the thief's own per-run key
    signed = sign_keys(thief, "run-1", "vertical.channels", "partner", forged_keys)
    # the verifier reads the CA's signed issuance record (party.toml / coordinator.toml `tls.issued`): that is
    # how it learns bank_a now signs through a signing certificate (the CA certificate alone cannot say so)
    verifier = IdentityVerifier(load_cert(ca.cert), signing_names=issued_signing_names(
        ca.directory / "issued.json", ca.cert, tmp_path / "high_water.json"))
    with pytest.raises(IdentityError, match="signing certificate"):
        verify_keys(verifier, "bank_a", "run-1", "vertical.channels", "partner", forged_keys, signed)
    # bank_a's genuine signing key (here a file standing in for the token) still signs its keys
    hsm = PartyIdentity.from_pem(signing_cert.read_bytes(), signing_key.read_bytes())
    verify_keys(verifier, "bank_a", "run-1", "vertical.channels", "partner", forged_keys,
                sign_keys(hsm, "run-1", "vertical.channels", "partner", forged_keys))
    # a member without a signing certificate signs with its TLS key as before
    other_key, other_csr = create_request("bank_b", "party", tmp_path / "bank_b")
    other = PartyIdentity.from_pem(sign_request(other_csr, ca.directory).read_bytes(), other_key.read_bytes())
    verify_keys(verifier, "bank_b", "run-1", "vertical.channels", "partner", forged_keys,
                sign_keys(other, "run-1", "vertical.channels", "partner", forged_keys))


def test_without_the_issuance_record_the_verifier_cannot_tell(tmp_path: Path) -> None:
    """The documented limit: a verifier given only the CA certificate accepts the TLS key's signatures."""
    ca = init_ca(tmp_path / "ca")
    tls_key, tls_csr = create_request("bank_a", "party", tmp_path / "bank_a")
    tls_cert = sign_request(tls_csr, ca.directory)
    _, signing_csr = create_request("bank_a", "party", tmp_path / "bank_a_hsm")
    sign_request(signing_csr, ca.directory, signing_only=True)
    thief = PartyIdentity.from_pem(tls_cert.read_bytes(), tls_key.read_bytes())
    keys = {"x25519": b"\x01" * 32}
    verify_keys(IdentityVerifier(load_cert(ca.cert)), "bank_a", "run-1", "vertical.channels", "partner", keys,
                sign_keys(thief, "run-1", "vertical.channels", "partner", keys))
