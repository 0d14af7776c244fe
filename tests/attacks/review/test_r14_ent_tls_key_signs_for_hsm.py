"""R14-ENT-1: with [hsm], a member's organisation signatures (run keys, approvals) are meant to come only from the
key held in its token (sampan.crypto.hsm threat model: an attacker with this machine's files cannot sign as the
organisation). But the member's mutual-TLS key is a PEM file on that same machine, and its clientAuth
certificate is still accepted by `IdentityVerifier.verify` as the organisation's signature: whoever copies
bank_a.key signs bank_a's per-run keys (a key substitution the HSM was there to stop).

The signing-only certificate is issued to a file key here (the CA cannot tell; SoftHSM is not needed to show
that the verifier never asks for it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.crypto.identity import IdentityError, IdentityVerifier, PartyIdentity, sign_keys, verify_keys
from sampan.deploy.certs import create_request, init_ca, load_cert, sign_request


@pytest.mark.xfail(strict=True, reason="R14-ENT-1: the TLS key file still signs as the organisation when its "
                   "signing key is held in an HSM (verifier never requires the signing-only certificate)")
def test_tls_key_cannot_sign_run_keys_once_the_member_has_an_hsm_signing_certificate(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    tls_key, tls_csr = create_request("bank_a", "party", tmp_path / "bank_a")
    tls_cert = sign_request(tls_csr, ca.directory)
    _, signing_csr = create_request("bank_a", "party", tmp_path / "bank_a_hsm")  # stands in for the token's key
    sign_request(signing_csr, ca.directory, signing_only=True)  # bank_a now signs through its HSM

    thief = PartyIdentity.from_pem(tls_cert.read_bytes(), tls_key.read_bytes())  # copied from the agent's disk
    forged_keys = {"x25519": b"\x01" * 32}  # the thief's own per-run key
    signed = sign_keys(thief, "run-1", "vertical.channels", "partner", forged_keys)
    verifier = IdentityVerifier(load_cert(ca.cert))
    with pytest.raises(IdentityError):
        verify_keys(verifier, "bank_a", "run-1", "vertical.channels", "partner", forged_keys, signed)
