"""Attacks on the portal's outbound connections, through the public classes (Api, the runner's Target, the guard).

DNS rebinding, redirects to loopback, endless and slow answers, a platform naming an internal address for the
verifier's party, and code that opens its own socket: each must fail to reach anything the policy refuses.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _egress_servers import endless, hostile_server, redirect_to, trickle

from sampan.verify.api import Party, PartyRegistration
from sampan.verify.catalogue.http import Api, ApiCallError
from sampan.verify.egress import EgressPolicy, EgressRefused, pinned_transport
from sampan.verify.platforms.weak import WeakBackend
from sampan.verify.serve_local import LocalServer, serve_app
from sampan.verify.server import make_benchmark_app

LOOPBACK = ["127.0.0.1/32"]


class Rebinding:
    """A resolver that answers ``first`` once, then ``later`` for ever (what a rebinding attacker's DNS does)."""

    def __init__(self, first: str, later: str) -> None:
        self.first, self.later, self.calls = first, later, 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [self.first if self.calls == 1 else self.later]


@pytest.fixture()
def weak() -> Iterator[tuple[LocalServer, str]]:
    token = secrets.token_urlsafe(16)
    with serve_app(make_benchmark_app(WeakBackend(), token=token)) as server:
        yield server, token


def test_rebinding_connections_go_to_the_pinned_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = Rebinding("93.184.216.34", "127.0.0.1")
    dialled: list[tuple[Any, ...]] = []

    def fake_connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        dialled.append(tuple(address))
        raise ConnectionRefusedError("test: no network")

    api = Api("https://rebind.example", "tok", egress=EgressPolicy(resolver=resolver))
    monkeypatch.setattr(socket, "create_connection", fake_connect)
    for _ in range(3):
        with pytest.raises(ApiCallError):
            api.call("GET", "/info")
    api.close()
    assert resolver.calls == 1  # resolved once, when pinned
    assert dialled and set(dialled) == {("93.184.216.34", 443)}  # never the rebound 127.0.0.1


def test_rebinding_after_the_check_still_reaches_only_the_pinned_server(weak: tuple[LocalServer, str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server, token = weak
    resolver = Rebinding("127.0.0.1", "169.254.169.254")  # loopback allow-listed stands in for "public"
    real = socket.getaddrinfo

    def no_dns_for_the_name(host: Any, *args: Any, **kwargs: Any) -> Any:
        assert host != "rebind.example", "httpx resolved the name again: the address was not pinned"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_dns_for_the_name)
    api = Api(f"http://rebind.example:{server.port}", token, egress=EgressPolicy(LOOPBACK, resolver=resolver))
    try:
        assert [api.call("GET", "/info").status for _ in range(3)] == [200, 200, 200]
    finally:
        api.close()
    assert resolver.calls == 1
    with pytest.raises(EgressRefused, match="link-local"):  # a fresh check would see the rebound answer
        EgressPolicy(LOOPBACK, resolver=resolver).pin(f"http://rebind.example:{server.port}")


def test_a_redirect_to_loopback_is_not_followed() -> None:
    with hostile_server(lambda h: None) as (admin_port, admin_hits):
        with hostile_server(redirect_to(f"http://127.0.0.1:{admin_port}/admin")) as (port, _):
            api = Api(f"http://127.0.0.1:{port}", "tok", egress=EgressPolicy(LOOPBACK))
            try:
                reply = api.call("GET", "/info")
            finally:
                api.close()
            assert reply.status == 302
            pinned = EgressPolicy(LOOPBACK).pin(f"http://127.0.0.1:{port}/")
            # even a client told to follow redirects cannot leave the pinned endpoint
            with httpx.Client(transport=pinned_transport(pinned), follow_redirects=True) as client:
                with pytest.raises(EgressRefused, match="pinned"):
                    client.get(f"http://127.0.0.1:{port}/bench/v1/info")
    assert admin_hits.paths == []


def test_an_endless_answer_is_cut() -> None:
    with hostile_server(endless) as (port, _):
        api = Api(f"http://127.0.0.1:{port}", "tok", egress=EgressPolicy(LOOPBACK), timeout_s=20)
        try:
            with pytest.raises(ApiCallError, match="longer than"):
                api.call("GET", "/info")
        finally:
            api.close()


def test_a_slow_answer_is_cut_at_the_deadline() -> None:
    with hostile_server(trickle) as (port, _):
        api = Api(f"http://127.0.0.1:{port}", "tok", egress=EgressPolicy(LOOPBACK), timeout_s=1)
        try:
            with pytest.raises(ApiCallError, match="still coming"):
                api.call("GET", "/info")
        finally:
            api.close()


def test_the_catalogue_refuses_an_endpoint_outside_the_policy(weak: tuple[LocalServer, str]) -> None:
    server, token = weak
    with pytest.raises(EgressRefused, match="loopback"):
        Api(server.url, token, egress=EgressPolicy())


class _NamesMetadata(WeakBackend):
    """A weak platform that tells the verifier's party to dial the cloud metadata service."""

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        party = super().register_party(project_id, registration)
        if party.connect is None:
            return party
        return party.model_copy(update={"connect": party.connect.model_copy(update={"address":
                                                                                   "169.254.169.254:80"})})


def test_a_platform_named_internal_address_is_not_dialled() -> None:
    from sampan.verify.runner import Target, run_evaluation

    token = secrets.token_urlsafe(16)
    with serve_app(make_benchmark_app(_NamesMetadata(), token=token)) as server:
        target = Target(url=server.url, token=token, egress=EgressPolicy(LOOPBACK))
        evaluation = run_evaluation(target, "quick", only=["S-REPLAY"])
    (outcome,) = evaluation.outcomes
    assert outcome.verdict == "error"
    assert "EgressRefused" in outcome.message and "169.254.169.254" in outcome.message


def test_the_worker_guard_refuses_any_socket_to_a_refused_address() -> None:
    """In a process of its own (an audit hook cannot be removed): own listeners pass, all else is refused."""
    with hostile_server(lambda h: None) as (foreign_port, hits):
        script = textwrap.dedent(f"""
            import socket
            from sampan.verify.egress import EgressPolicy, EgressRefused, install_connect_guard, own_listening_ports
            listener = socket.create_server(("127.0.0.1", 0))
            install_connect_guard(EgressPolicy(), local_ports=own_listening_ports)
            socket.create_connection(("127.0.0.1", listener.getsockname()[1]), timeout=2).close()
            print("own listener: connected")
            for target in [("127.0.0.1", {foreign_port}), ("169.254.169.254", 80), ("10.0.0.1", 5432),
                           ("::ffff:127.0.0.1", {foreign_port})]:
                family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
                with socket.socket(family) as s:
                    s.settimeout(0.5)
                    try:
                        s.connect(target)
                        print("CONNECTED", target)
                    except EgressRefused as exc:
                        print("refused", target[0], exc.reason)
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "own listener: connected"
    assert "CONNECTED" not in done.stdout
    assert [line.split()[1] for line in lines[1:]] == ["127.0.0.1", "169.254.169.254", "10.0.0.1",
                                                       "::ffff:127.0.0.1"]
    assert hits.paths == []
