"""R15-ENGINE-5: an engine TLS folder that other users can write (or own) is refused.

Attack: another local user of a party host. If the folder named by ``[compute] tls_dir`` (or ``ca.pem`` in it)
were writable by others, that user could replace ``ca.pem`` with a bundle holding their own CA too (or swap
``node.pem``/``node.key``): the party's driver and nodes would then accept that user's certificates, and whoever
holds one could join the engine and run code on the party's rows.

Safe behaviour: like sampan.files' private files, a tls_dir that others may write to (the folder or any of
ca.pem/node.pem/node.key/auth_token), a secret readable by others, or a symbolic link is refused with a
ConfigError naming ``[compute] tls_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sampan.compute import issue_engine_certs, load_engine_tls
from sampan.errors import ConfigError


def test_a_tls_dir_others_may_write_is_refused(tmp_path: Path) -> None:
    tls = issue_engine_certs(tmp_path / "engine-tls", party="bank")
    assert load_engine_tls(tls.ca_cert.parent) == tls
    tls.ca_cert.parent.chmod(0o777)
    with pytest.raises(ConfigError, match=r"\[compute\] tls_dir: .*writable by other users"):
        load_engine_tls(tls.ca_cert.parent)
    tls.ca_cert.parent.chmod(0o700)
    tls.ca_cert.chmod(0o666)  # any local user could put their own CA here
    with pytest.raises(ConfigError, match=r"\[compute\] tls_dir: .*ca.pem is writable by other users"):
        load_engine_tls(tls.ca_cert.parent)
    tls.ca_cert.chmod(0o600)
    assert tls.token is not None
    tls.token.chmod(0o644)
    with pytest.raises(ConfigError, match=r"\[compute\] tls_dir: .*auth_token is readable by other users"):
        load_engine_tls(tls.ca_cert.parent)


def test_a_linked_engine_file_is_refused(tmp_path: Path) -> None:
    tls = issue_engine_certs(tmp_path / "engine-tls", party="bank")
    other = tmp_path / "elsewhere.pem"
    other.write_bytes(tls.ca_cert.read_bytes())
    tls.ca_cert.unlink()
    os.symlink(other, tls.ca_cert)
    with pytest.raises(ConfigError, match=r"\[compute\] tls_dir: .*symbolic link"):
        load_engine_tls(tls.ca_cert.parent)
