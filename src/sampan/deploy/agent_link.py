"""A party agent's outbound link: its mutual-TLS credentials, the pre-flight probe, and the gRPC link settings.

Why here: the agent dials out only (it never listens); everything about how it reaches and checks the
coordinator (CA, client certificate, pinned coordinator name or key, current CRL) sits in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from sampan.config import ConfigError
from sampan.deploy.certs import probe_coordinator
from sampan.deploy.config import PartyConfig, split_address
from sampan.deploy.keyfiles import KeyFileError, unencrypted_pem
from sampan.files import private_directory
from sampan.runtime.capabilities import capability_names
from sampan.transport.grpc_client import LinkSettings, PartyLink
from sampan.wire import Message

__all__ = ["open_link"]


def open_link(config: PartyConfig, handle: Callable[[Message], Message]) -> PartyLink:
    """The party's link to its coordinator (not yet connected: `serve_forever` dials). Unreadable TLS files or an
    encrypted key are a ConfigError naming the party."""
    p, tls = config.party, config.tls
    name = p.name
    host, port = split_address(p.coordinator)
    server_name = p.server_name or host
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls.ca),
            private_key=unencrypted_pem(tls.key, what=f"{name}'s private key"),
            certificate_chain=_read(tls.cert),
        )
    except OSError as exc:
        raise ConfigError(f"party {name!r}: cannot read TLS files: {exc}") from None
    except KeyFileError as exc:
        raise ConfigError(f"party {name!r}: {exc}") from None
    private_directory(p.state_dir)

    def preflight() -> None:
        probe_coordinator(
            host,
            port,
            ca=Path(tls.ca),
            cert=Path(tls.cert),
            key=Path(tls.key),
            server_name=server_name,
            expected_name=p.coordinator_name,
            pin=p.coordinator_pin,
            crl=_path(tls.crl) if tls.crl else None,
            state=Path(p.state_dir) / "revocation_high_water.json",
        )  # older CRLs refused

    settings = LinkSettings(
        name=name,
        address=p.coordinator,
        coordinator_name=p.coordinator_name,
        target_name=server_name,
        limits=p.limits(),
        backoff_initial_s=p.backoff_initial_s,
        backoff_max_s=p.backoff_max_s,
        capabilities=tuple(capability_names()),
        agent="sampan-party/1",
    )
    return PartyLink(settings, handle, credentials, preflight=preflight)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
