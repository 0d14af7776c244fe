"""R17-PORTAL-2: with its local platforms, the embedded portal lets every applicant reach EVERY loopback port.

Attack (a malicious applicant of `sampan portal --local-platforms`): `EmbeddedPortal` allow-lists the whole of
127.0.0.1/32 and ::1/128 so the qualification check can reach its two local platforms, and an allow-listed
address is open on every port (`EgressPolicy`: "An allow-listed address is open on every port"). The applicant
then names http://127.0.0.1:<any port> as its endpoint: the qualification check connects to whatever listens
there on the portal's machine (the portal itself, a database, a local control plane), accepts plain http there
(allow-listed loopback), sends its bearer token and a GET /bench/v1/info, and tells the applicant what it found
("nothing accepts connections on ... port N" against "answered HTTP 404 ..."): a loopback port scanner and a
request forger inside the operator's machine. The worker has `own_ports` for exactly this; the portal's policy
does not use it.

FIXED: `EgressPolicy` takes "address:port" allow entries ("127.0.0.1:8443", "[::1]:8443"), open on that port
only, and `EmbeddedPortal` allow-lists exactly its local platforms' "127.0.0.1:<port>" (`platform_allow`) instead
of 127.0.0.1/32 and ::1/128: any other loopback port, the portal's own included, is refused at the "address" check
(and by the worker's connect guard, which now passes the port to `allows_ip`).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

from _core_fixtures import FAST_ARGON2  # noqa: E402

from sampan.verify.egress import EgressRefused  # noqa: E402


def test_the_embedded_portal_opens_loopback_only_on_its_own_platforms(tmp_path) -> None:
    from sampan.web.portal.embedded import EmbeddedPortal

    internal = socket.socket()  # some other local service of the operator's machine (say, a database)
    internal.bind(("127.0.0.1", 0))
    internal.listen(1)
    port = internal.getsockname()[1]
    embedded = EmbeddedPortal(tmp_path / "p", port=0, argon2_params=FAST_ARGON2, local_platforms=True)
    started = embedded.start()
    try:
        policy = embedded.portal.egress
        for local in started.platforms.values():  # its own platforms stay reachable
            policy.pin(local.url)
        portal_port = int(started.url.split(":")[2].split("/")[0])
        for target in (f"http://127.0.0.1:{port}/", f"http://[::1]:{port}/", f"http://127.0.0.1:{portal_port}/"):
            with pytest.raises(EgressRefused):
                policy.pin(target)
    finally:
        embedded.stop()
        internal.close()


def test_a_saved_platform_port_of_an_earlier_start_is_not_carried_over(tmp_path) -> None:
    """The admin page shows, and so saves, the running list with the platforms' 127.0.0.1:<port>: at the next start
    those ports may be any other local service's, so saved loopback address:port entries are dropped."""
    from sampan.runtime.store import Store
    from sampan.web.portal.allow_list import KEY
    from sampan.web.portal.embedded import EmbeddedPortal
    from sampan.web.portal.tables import create_portal_tables, settings

    internal = socket.socket()
    internal.bind(("127.0.0.1", 0))
    internal.listen(1)
    port = internal.getsockname()[1]
    folder = tmp_path / "p"
    folder.mkdir(mode=0o700)
    store = Store.open(f"sqlite:///{folder / 'portal.db'}", audit_key=folder / "audit-key.pem")
    try:
        create_portal_tables(store.engine)
        with store.engine.begin() as c:
            c.execute(settings.insert().values(key=KEY, value=[f"127.0.0.1:{port}", "10.9.0.0/16"]))
    finally:
        store.close()
    embedded = EmbeddedPortal(folder, port=0, argon2_params=FAST_ARGON2, local_platforms=True)
    started = embedded.start()
    try:
        policy = embedded.portal.egress
        assert "10.9.0.0/16" in policy.allow and f"127.0.0.1:{port}" not in policy.allow
        with pytest.raises(EgressRefused):
            policy.pin(f"http://127.0.0.1:{port}/")
        for local in started.platforms.values():
            policy.pin(local.url)
    finally:
        embedded.stop()
        internal.close()
