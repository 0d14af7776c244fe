"""R15-ENGINE-4: ``[compute] tls = false`` is refused with a cluster address on the network.

Attack: a network attacker on the party's private network (or anyone who reaches it: a shared VPC, a peered
consortium network in 10/8 — "private" is a routing property, not a trust boundary). With ``engine = "ray"``,
``address = "10.0.0.5:6379"`` and ``tls = false``, the party's driver would talk to the cluster in plain text:
the table it ``put``s (raw customer rows) would cross the network unencrypted, and nothing would authenticate
the cluster.

Safe behaviour (issue 15, item 4: "engine TLS on"): TLS may be switched off only for an engine on loopback; a
network cluster address with ``tls = false`` is refused with a ConfigError naming ``[compute] tls``, both in the
settings and in `RayEngine` itself (before Ray is imported or anything dialled).
"""

from __future__ import annotations

import pytest

from sampan.compute import ComputeSettings
from sampan.compute.ray_engine import RayEngine
from sampan.errors import ConfigError


@pytest.mark.parametrize("address", ["10.0.0.5:6379", "ray://192.168.1.20:10001", "[fd00::5]:6379"])
def test_a_network_cluster_without_tls_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match=r"\[compute\] tls"):  # pydantic's ValidationError wraps the ConfigError
        ComputeSettings(engine="ray", address=address, tls=False)
    with pytest.raises(ConfigError, match=r"\[compute\] tls"):
        RayEngine(address, tls=False)


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "[::1]:6379"])
def test_tls_may_be_off_on_loopback_only(address: str) -> None:
    assert not ComputeSettings(engine="ray", address=address, tls=False).tls
