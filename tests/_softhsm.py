"""A SoftHSM2 token in a temporary folder and a consortium whose bank_a holds its organisation key in it: shared
by tests/test_hsm.py and tests/attacks/test_hsm_key.py. `make test` installs softhsm2
(tools/install_system_deps.sh); without it these tests fail, saying so, rather than skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

PIN, SO_PIN, TOKEN = "2468-1357", "9753-8642", "sampan-test"
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
           "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")


@contextmanager
def softhsm_token(base: Path) -> Iterator[str]:
    """A fresh token labelled TOKEN under `base` (SOFTHSM2_CONF set while inside); yields the module path."""
    import pkcs11

    module = next((m for m in MODULES if os.path.exists(m)), None)
    if module is None or shutil.which("softhsm2-util") is None:
        pytest.fail("SoftHSM2 is not installed: run `make test` (it installs softhsm2) or apt-get install softhsm2")
    (base / "tokens").mkdir(parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
                       check=True, capture_output=True, timeout=60)
        pkcs11.lib(module).reinitialize()  # a library loaded earlier in this process would read another config
        yield module


def consortium(module: str, base: Path) -> SimpleNamespace:
    """A CA; bank_a with an ordinary TLS certificate AND a signing certificate for a key made in the token."""
    from sampan.crypto.hsm import Pkcs11Key
    from sampan.crypto.identity import IdentityVerifier
    from sampan.deploy.certs import create_request, init_ca, load_cert, sign_request
    from sampan.deploy.hsm_request import create_hsm_request

    ca = init_ca(base / "ca")
    _, tls_csr = create_request("bank_a", "party", base / "bank_a")
    tls_cert = sign_request(tls_csr, ca.directory)
    key = Pkcs11Key(module, TOKEN, "bank_a-org", PIN)
    csr = create_hsm_request(key, "bank_a", "party", base / "bank_a", organisation="Bank A")
    signing_cert = sign_request(csr, ca.directory, signing_only=True)
    return SimpleNamespace(base=base, ca=ca, key=key, tls_cert=tls_cert, signing_cert=signing_cert,
                           verifier=IdentityVerifier(load_cert(ca.cert)))
