"""R14-ENT-7: `sampan certs hsm-keygen --existing` (create_hsm_request(generate=False)) and `HsmIdentity` use
whatever key sits under the label, without checking that the token keeps it sensitive and never-extractable. A key
made extractable (or imported from a file, so a copy lives outside the token) is accepted, and the CLI still prints
"(sensitive, not extractable)". The HSM threat model (the key cannot be copied) then does not hold, silently."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pkcs11 = pytest.importorskip("pkcs11")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _softhsm import PIN, TOKEN, softhsm_token  # noqa: E402

from sampan.crypto.hsm import Pkcs11Key, open_session  # noqa: E402
from sampan.deploy.hsm_request import create_hsm_request  # noqa: E402


def test_existing_extractable_key_is_refused(tmp_path: Path) -> None:
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    with softhsm_token(tmp_path / "hsm") as module:
        key = Pkcs11Key(module, TOKEN, "bank_a-org", PIN)
        with open_session(key, rw=True) as session:  # the key someone made earlier: extractable, not sensitive
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
            _, private = params.generate_keypair(store=True, label="bank_a-org",
                                                 private_template={Attribute.SIGN: True, Attribute.SENSITIVE: False,
                                                                   Attribute.EXTRACTABLE: True})
            assert private[Attribute.EXTRACTABLE] is True and private[Attribute.VALUE]  # its scalar can be read
        with pytest.raises(Exception, match="(?i)extractable|sensitive"):
            create_hsm_request(key, "bank_a", "party", tmp_path / "out", generate=False)
