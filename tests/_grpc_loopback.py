"""Test helper: a coordinator hub with real mutual TLS on loopback and party links on threads.

`Loopback(root, {name: handler})` issues a CA and every certificate, starts the hub and one
`PartyLink` thread per party; `links[name]` can be closed to force a reconnect. The `loopback`
fixture builds them and closes them after the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from sampan.deploy.certs import CertificateAuthenticator, create_request, init_ca, sign_request
from sampan.transport.grpc_client import LinkSettings, PartyLink
from sampan.transport.grpc_envelope import Limits
from sampan.transport.grpc_hub import GrpcTransport, Hub, HubSettings
from sampan.wire import Message

Handler = Callable[[Message], Message]


class Loopback:
    """A hub with mTLS and party links on threads; `links[name]` can be closed to force a reconnect."""

    def __init__(self, root: Path, handlers: dict[str, Handler], *, limits: Limits | None = None,
                 rejoin_timeout_s: float = 30.0, heartbeat_s: float = 1.0, silent_after_s: float = 6.0) -> None:
        self.root = root
        ca = init_ca(root / "ca")
        _, csr = create_request("coordinator", "coordinator", root / "coordinator", dns=["localhost"])
        sign_request(csr, ca.directory)
        members = {name: "party" for name in handlers}
        self.limits = limits or Limits()
        self.hub = Hub(HubSettings(limits=self.limits, rejoin_timeout_s=rejoin_timeout_s,
                                   heartbeat_s=heartbeat_s, silent_after_s=silent_after_s),
                       CertificateAuthenticator(ca.cert, crl=ca.crl, members=members, issued=ca.index),
                       members)
        creds = grpc.ssl_server_credentials(
            [((root / "coordinator" / "coordinator.key").read_bytes(),
              (root / "coordinator" / "coordinator.crt").read_bytes())],
            root_certificates=ca.cert.read_bytes(), require_client_auth=True)
        port = self.hub.start("127.0.0.1:0", creds)
        self.stop = threading.Event()
        self.links: dict[str, PartyLink] = {}
        self.threads: list[threading.Thread] = []
        for name, handler in handlers.items():
            _, csr = create_request(name, "party", root / name)
            cert = sign_request(csr, ca.directory)
            creds = grpc.ssl_channel_credentials(ca.cert.read_bytes(), (root / name / f"{name}.key").read_bytes(),
                                                 cert.read_bytes())
            settings = LinkSettings(name=name, address=f"127.0.0.1:{port}", target_name="localhost",
                                    limits=self.limits, backoff_initial_s=0.05, backoff_max_s=0.2)
            self.links[name] = PartyLink(settings, handler, creds)
            thread = threading.Thread(target=self.links[name].serve_forever, args=(self.stop,), daemon=True)
            thread.start()
            self.threads.append(thread)
        assert self.hub.wait_for(list(handlers), 20) == []

    def transport(self) -> GrpcTransport:
        return self.hub.transport()

    def close(self) -> None:
        self.stop.set()
        for link in self.links.values():
            link.close()
        self.hub.stop(0.2)
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[Callable[..., Loopback]]:
    made: list[Loopback] = []

    def make(handlers: dict[str, Handler], **kw: object) -> Loopback:
        made.append(Loopback(tmp_path / f"fed{len(made)}", handlers, **kw))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for lb in made:
        lb.close()


def echo(name: str, delay: float = 0.0) -> Handler:
    """A handler that doubles the arrays it gets, after `delay` seconds; kind "fail" answers an error."""
    def handle(message: Message) -> Message:
        if message.kind == "fail":
            return message.error_reply(ValueError(f"{name} cannot"))
        time.sleep(delay)
        return message.reply("echo", {k: v * 2 for k, v in message.arrays.items()}, {"who": name, **message.meta})
    return handle
