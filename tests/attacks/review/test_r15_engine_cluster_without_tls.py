"""R15-ENGINE-4: ``[compute] tls = false`` is accepted with a cluster address on the network.

Attack: a network attacker on the party's private network (or anyone who reaches it: a shared VPC, a peered
consortium network in 10/8 — "private" is a routing property, not a trust boundary). With ``engine = "ray"``,
``address = "10.0.0.5:6379"`` and ``tls = false``, the party's driver talks to the cluster in plain text: the
table it ``put``s (raw customer rows) crosses the network unencrypted, and nothing authenticates the cluster
(whoever answers at that address gets the rows and returns block results the party trusts).

Expected safe behaviour (issue 15, item 4: "engine TLS on"; docs/architecture.md: mutual TLS from a CA private
to the party): TLS may be switched off only for a private instance on loopback; a cluster address with
``tls = false`` is refused with a ConfigError naming ``[compute] tls``.
What happens: the settings are accepted (the engine would connect in plain text).
"""

from __future__ import annotations

import pytest

from sampan.compute import ComputeSettings


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="R15-ENGINE-4: [compute] tls = false accepted with a network cluster address")
@pytest.mark.parametrize("address", ["10.0.0.5:6379", "ray://192.168.1.20:10001", "[fd00::5]:6379"])
def test_a_network_cluster_without_tls_is_refused(address: str) -> None:
    try:
        ComputeSettings(engine="ray", address=address, tls=False)
    except ValueError as exc:  # pydantic's ValidationError / sampan's ConfigError
        assert "tls" in str(exc)
        return
    raise AssertionError(f"[compute] address={address!r} with tls=false was accepted: plain text to the cluster")
