"""R15-ENGINE-5: an engine TLS folder that other users can write (or own) is accepted.

Attack: another local user of a party host. `load_engine_tls` checks only that ``node.key`` is not readable by
others; it does not look at the folder or at ``ca.pem``. If the folder named by ``[compute] tls_dir`` is
writable by others (a shared /srv path, a 0777 folder, one owned by another account), that user replaces
``ca.pem`` with a bundle holding their own CA too (or swaps ``node.pem``/``node.key`` between checks): the
party's driver and nodes then accept that user's certificates, and whoever holds one can join the engine and
run code on the party's rows (the mutual TLS of docs/architecture.md is only as private as this folder).

Expected safe behaviour: like sampan.files' private files, a tls_dir that others may write to (folder or any of
ca.pem/node.pem/node.key), or a file owned by another user, is refused with a ConfigError naming the field.
What happens: a 0777 folder with a 0666 ca.pem is accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.compute import issue_engine_certs, load_engine_tls
from sampan.errors import ConfigError


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="R15-ENGINE-5: load_engine_tls accepts a folder and ca.pem other users may write")
def test_a_tls_dir_others_may_write_is_refused(tmp_path: Path) -> None:
    tls = issue_engine_certs(tmp_path / "engine-tls", party="bank")
    tls.ca_cert.parent.chmod(0o777)
    tls.ca_cert.chmod(0o666)  # any local user may now put their own CA here
    try:
        load_engine_tls(tls.ca_cert.parent)
    except ConfigError as exc:
        assert "tls_dir" in str(exc)
        return
    raise AssertionError("a world-writable engine TLS folder and ca.pem were accepted")
