"""R17-PORTAL-7: the qualification check tells an applicant which internal address a name resolves to.

Attack (a malicious applicant, through `Portal.qualify`): name an endpoint such as https://db.corp.internal/ or
https://vault.prod.example/ (names only the portal's own resolver knows). The egress policy refuses it, as it
should, but the refusal it stores and shows on the project page reads "db.corp.internal resolves to 10.20.30.40,
a private address": the portal answers internal DNS questions for anyone with an account (30 names an hour),
mapping the operator's private network before any other attack. A public name's address is the applicant's
own business; an internal one is not.

FIXED: `EgressPolicy` describes a refused NAME by its address class only ("db.corp.internal resolves to a private
address"; the IPv4 inside an IPv6 form is not named either); `EgressRefused.address` keeps the address and the
qualification check writes it to the portal's log (logger "sampan.portal") for the operator.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

import logging  # noqa: E402

import pytest  # noqa: E402
from _core_fixtures import FAST_ARGON2, TOKEN, applicant  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402
from sampan.verify.egress import EgressPolicy  # noqa: E402
from sampan.verify.qualify import qualify  # noqa: E402
from sampan.web.portal import Portal, PortalAccounts  # noqa: E402

INTERNAL = {"db.corp.internal": "10.20.30.40", "metadata.corp.internal": "169.254.169.254",
            "vault.corp.internal": "fd12:3456:789a::17"}


def _resolver(host: str, port: int) -> list[str]:
    if host in INTERNAL:
        return [INTERNAL[host]]
    raise OSError("unknown name")


def test_a_refused_name_does_not_reveal_its_internal_address(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sampan.portal")
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        portal = Portal(store, tmp_path / "portal", egress=EgressPolicy(resolver=_resolver), qualifier=qualify,
                        accounts=PortalAccounts(store.engine, argon2_params=FAST_ARGON2))
        mallory = applicant(portal, "mallory@probe.example")
        leaked = []
        for name, address in INTERNAL.items():
            pid = portal.create_project(mallory, f"probe {name}", f"https://{name}/bench/v1", "", TOKEN)
            report = portal.qualify(mallory, pid)
            assert not report["passed"] and report["checks"][0]["status"] == "failed"
            shown = str(portal.project(mallory, pid)["last_qualification"])
            if address in shown:
                leaked.append((name, address))
        assert leaked == []
        assert all(address in caplog.text for address in INTERNAL.values())  # the operator's log keeps them
    finally:
        store.close()
