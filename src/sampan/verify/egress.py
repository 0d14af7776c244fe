"""Egress policy: where the verifier may connect when an applicant names the address (the portal, issue 17).

Threat model. An applicant of the verification portal supplies an endpoint URL, and the platform behind it names
further addresses in its answers (`Party.connect.address`, where the verifier's own party dials). A malicious
applicant wants the portal to reach what it should not: internal services (SSRF: the cloud metadata service
169.254.169.254, admin ports on 127.0.0.1, databases on 10/8), by naming them directly, in a disguised form
(decimal or hex IPv4 "2130706433", IPv4-mapped IPv6 "::ffff:127.0.0.1", 6to4 / NAT64 / Teredo forms, 0.0.0.0),
through DNS rebinding (a name that resolves public when checked and private when connected), or through a redirect
to an internal address. Defences here:

* `EgressPolicy.pin` resolves a URL's host ONCE and refuses (`EgressRefused`, naming the host and the address class)
  any answer that is not a public unicast address: private, loopback, link-local (metadata), multicast, reserved,
  unspecified, shared (100.64/10), documentation/benchmark ranges, and the IPv4 inside mapped, 6to4, NAT64 and
  Teredo forms, unless an administrator allow-listed the address (a CIDR, on every port), one "address:port" or
  "name:port" (that port only: the embedded portal's own local platforms, R17-PORTAL-2), or the exact host name.
  URLs with userinfo or a scheme other than http/https are refused. A refused NAME is described by its address
  class only ("resolves to a private address"), never the address it resolved to: the applicant would otherwise
  learn the operator's internal DNS (R17-PORTAL-7); `EgressRefused.address` keeps it for the server's log.
* The answer is PINNED: `pinned_transport` sends every request to the checked IP while the Host header, TLS SNI and
  the certificate check use the host name (httpcore's "sni_hostname" request extension), so a second DNS answer is
  never asked for. A request for any other host, port or scheme through that transport is refused, so a redirect
  (never followed by the verifier's clients; httpx does not follow by default) cannot leave the pinned endpoint.
* Raw TCP targets a platform names ("host:port") are pinned the same way (`pin_address`); the verifier's recording
  proxy relays to the pinned IP (`sampan.verify.catalogue.dataplane`), and every party kit dials that proxy.
* `install_connect_guard` (the portal's worker process) adds a last line: a Python audit hook refuses any
  ``socket.connect`` to an address the policy refuses, except loopback ports the verifier itself listens on.
  What it does not see: sockets opened in C without Python's socket module (gRPC's C core: Sampan's deployed-mode
  agent, which dials only the verifier's loopback proxy) and child processes (Flower's client, which runs in its own
  venv and dials only that proxy).

Not defended here: bounded reading (sizes, deadlines) is `sampan.verify.bounded`; CPU, memory and wall-clock bounds
are the portal's worker subprocess (`sampan.web.portal.runner`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sampan.errors import SampanError

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["EgressPolicy", "EgressRefused", "PinnedEndpoint", "Resolver", "address_class", "install_connect_guard",
           "own_listening_ports",
           "pinned_transport", "system_resolver"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""(host name, port) -> the addresses it resolves to (strings); raises OSError when it does not resolve."""

_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_DEFAULT_PORTS = {"http": 80, "https": 443}


class EgressRefused(SampanError):
    """The portal may not connect there: names the host, the address and why (its class, or the URL's fault)."""

    category = "egress policy"

    def __init__(self, host: str, message: str, *, address: str | None = None, reason: str = "refused") -> None:
        super().__init__(message)
        self.host, self.address, self.reason = host, address, reason


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answers for ``host`` (every A/AAAA record, in its order)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def _embedded_v4(ip: IP) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, NAT64, Teredo client): what it really reaches."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_class(ip: IP | str, *, reveal: bool = True) -> str | None:
    """None for a public unicast address, else the class that makes it internal, in words ("loopback", ...).
    ``reveal=False``: never name an address inside the words (the IPv4 an IPv6 form carries), for text an
    applicant reads about a name it did not resolve itself."""
    ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    inner = _embedded_v4(ip)
    if inner is not None:
        found = address_class(inner, reveal=reveal)
        if not found:
            return None
        return f"{found} (IPv4 {inner} inside)" if reveal else f"{found} (an IPv4 address inside an IPv6 form)"
    if ip.is_unspecified:
        return "unspecified (0.0.0.0 / ::)"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata lives here)" if str(ip).startswith("169.254.") else "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared address space (100.64.0.0/10, carrier-grade NAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def _with_port(text: str) -> tuple[str, int] | None:
    """An allow-list entry "host:port" / "[v6]:port" split, or None for a CIDR / bare name / bare IPv6."""
    match = re.fullmatch(r"\[([0-9a-f:.]+)\]:(\d{1,5})", text) or re.fullmatch(r"([^:/\[\]]+):(\d{1,5})", text)
    return (match.group(1), int(match.group(2))) if match else None


def _literal_ip(host: str) -> IP | None:
    """``host`` as an IP address, including the legacy IPv4 forms the C resolver accepts ("127.1", "0x7f000001",
    "2130706433", "0177.0.0.1"), so a disguised address is classified without a DNS question."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host):  # inet_aton: decimal, octal (0...), hex (0x...) parts
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class PinnedEndpoint:
    """A checked endpoint: connect to ``ip``:``port``; speak to ``host`` (Host header, TLS SNI, certificate name).

    ``url`` is "" for a raw "host:port" address (``scheme`` "tcp"); ``allow_listed`` is True when only the
    administrator's allow-list let it through (a non-public address)."""

    url: str
    host: str
    port: int
    ip: str
    scheme: str
    allow_listed: bool = False

    @property
    def address(self) -> str:
        """"ip:port" (IPv6 in brackets): where a raw TCP connection goes."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.ip).is_loopback

    @property
    def host_is_ip(self) -> bool:
        return _literal_ip(self.host) is not None


class EgressPolicy:
    """Which addresses the verifier may connect to: public unicast ones, and what an administrator allow-listed.

    ``allow``: CIDRs ("127.0.0.1/32", "10.1.2.0/24", "::1") or exact host names ("bench.internal.example"), open
    on every port; or one address or name with a port ("127.0.0.1:8443", "[::1]:8443", "bench.internal:443"),
    open on that port only (the embedded portal lists its local platforms so: the rest of loopback stays
    refused). A name on the list accepts whatever it resolves to (the administrator trusts its DNS), still
    pinned. ``own_ports``: loopback is accepted on the ports it names and no others (the
    portal's worker: the platform it started itself, never another local service). ``resolver`` stands in for
    DNS (tests). Thread-safe; holds no state between calls."""

    def __init__(self, allow: Sequence[str] = (), *, resolver: Resolver | None = None,
                 own_ports: Callable[[], Iterable[int]] | None = None) -> None:
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._names: set[str] = set()
        self._ip_ports: set[tuple[IP, int]] = set()
        self._name_ports: set[tuple[str, int]] = set()
        for entry in allow:
            text = str(entry).strip().lower()
            if not text:
                continue
            with_port = _with_port(text)
            if with_port is not None:
                host, port = with_port
                if not 1 <= port <= 65535:
                    raise ValueError(f"egress allow-list: {entry!r}: port {port} is not in 1..65535")
                try:
                    self._ip_ports.add((ipaddress.ip_address(host), port))
                    continue
                except ValueError:
                    pass
                if not _HOST_NAME.match(host):
                    raise ValueError(f"egress allow-list: {entry!r} is neither an address nor a host name with a "
                                     "port")
                self._name_ports.add((host.rstrip("."), port))
                continue
            try:
                self._networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _HOST_NAME.match(text):
                raise ValueError(f"egress allow-list: {entry!r} is neither a CIDR nor a host name")
            self._names.add(text.rstrip("."))
        self._resolver = resolver
        self._own_ports = own_ports

    @property
    def allow(self) -> list[str]:
        """The allow-list as strings (what a subprocess gets to rebuild the same policy)."""
        ip_ports = sorted((f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}")
                          for ip, port in self._ip_ports)
        return ([str(n) for n in self._networks] + ip_ports + sorted(self._names)
                + sorted(f"{name}:{port}" for name, port in self._name_ports))

    def ip_allow_listed(self, ip: IP | str, port: int | None = None) -> bool:
        """Whether an administrator opened this address: a CIDR on any port, an "address:port" entry only on
        ``port`` (None: no port known, so only CIDRs count)."""
        ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        inner = _embedded_v4(ip)
        if any(ip in n or (inner is not None and inner in n) for n in self._networks):
            return True
        return port is not None and any(port == p and (ip == a or inner == a) for a, p in self._ip_ports)

    def allows_ip(self, ip: IP | str, port: int | None = None) -> bool:
        """True when a connection to this address (and ``port``, for "address:port" entries; no name involved)
        is allowed."""
        return address_class(ip) is None or self.ip_allow_listed(ip, port)

    def _resolve(self, host: str, port: int) -> list[str]:
        resolver = self._resolver or system_resolver
        try:
            answers = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise EgressRefused(host, f"{host}: the name does not resolve ({exc})", reason="unresolved") from None
        if not answers:
            raise EgressRefused(host, f"{host}: the name resolves to no address", reason="unresolved")
        return list(answers)

    def _pin(self, host: str, port: int, scheme: str, url: str) -> PinnedEndpoint:
        host = host.lower().strip("[]").rstrip(".") if host else ""
        if not host:
            raise EgressRefused(host, f"{url or host!r}: no host name", reason="malformed")
        if not 1 <= port <= 65535:
            raise EgressRefused(host, f"{host}: port {port} is not in 1..65535", reason="malformed")
        literal = _literal_ip(host)
        if literal is None and not _HOST_NAME.match(host):
            raise EgressRefused(host, f"{host!r} is not a valid host name (use its ASCII / xn-- form)",
                                reason="malformed")
        name_listed = literal is None and (host in self._names or (host, port) in self._name_ports)
        answers = [str(literal)] if literal is not None else self._resolve(host, port)
        chosen: IP | None = None
        listed = False
        for answer in answers:  # every answer must pass: one bad record refuses the name (no lottery)
            try:
                ip = ipaddress.ip_address(answer.split("%", 1)[0])
            except ValueError:
                raise EgressRefused(host, f"{host}: the resolver answered {answer!r}, not an IP address",
                                    reason="malformed") from None
            found = address_class(ip)
            own = ip.is_loopback and self._own_ports is not None and port in set(self._own_ports())
            if found is not None and not (name_listed or own or self.ip_allow_listed(ip, port)):
                # A literal address is the applicant's own text; a name's answer is the operator's DNS: class only.
                what = f"{host} is" if literal is not None else f"{host} resolves to"
                shown = found if literal is not None else (address_class(ip, reveal=False) or found)
                article = "an" if shown[0] in "aeiou" else "a"
                raise EgressRefused(host, f"{what} {article} {shown} address: the portal connects only to public "
                                    "addresses unless an administrator allow-lists it", address=str(ip),
                                    reason=shown)
            listed = listed or found is not None
            chosen = chosen or ip
        assert chosen is not None
        return PinnedEndpoint(url=url, host=host, port=port, ip=str(chosen), scheme=scheme, allow_listed=listed)

    def pin(self, url: str) -> PinnedEndpoint:
        """Check ``url`` (http/https, no userinfo), resolve its host once and return where to connect."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EgressRefused("", f"{url!r} is not a valid URL ({exc})", reason="malformed") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise EgressRefused(parts.hostname or "", f"{url!r}: only http and https URLs are allowed",
                                reason="scheme")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise EgressRefused(parts.hostname or "", f"{url!r}: a user name or password in the URL is not allowed"
                                " (the token goes in the project's token field)", reason="userinfo")
        return self._pin(parts.hostname or "", port or _DEFAULT_PORTS[scheme], scheme, url)

    def pin_address(self, address: str) -> PinnedEndpoint:
        """Check a raw "host:port" (IPv6 in brackets) a platform named, e.g. `Party.connect.address`."""
        host, sep, port = address.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise EgressRefused(host, f"{address!r} is not host:port", reason="malformed")
        return self._pin(host, int(port), "tcp", "")


# ---------------------------------------------------------------------------------------------- HTTP transport
def pinned_transport(pinned: PinnedEndpoint, *, verify: ssl.SSLContext | bool = True,
                     **options: Any) -> httpx.BaseTransport:
    """An httpx transport that sends every request to ``pinned.ip`` (Host, SNI and certificate check on
    ``pinned.host``) and refuses requests for any other scheme, host or port. ``verify``/``options`` go to
    httpx.HTTPTransport (the TLS context, timeouts...). Use it with a client that does not follow redirects."""
    import httpx

    inner = httpx.HTTPTransport(verify=verify, **options)

    class _Pinned(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            url = request.url
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
            if (url.scheme != pinned.scheme or url.host.lower().strip("[]").rstrip(".") != pinned.host
                    or port != pinned.port):
                raise EgressRefused(url.host, f"{url.scheme}://{url.host}:{port}: this connection is pinned to "
                                    f"{pinned.scheme}://{pinned.host}:{pinned.port} and goes nowhere else",
                                    reason="not the pinned endpoint")
            extensions = dict(request.extensions)
            if url.scheme == "https" and not pinned.host_is_ip:
                extensions["sni_hostname"] = pinned.host
            moved = httpx.Request(request.method, url.copy_with(host=pinned.ip), headers=request.headers,
                                  stream=request.stream, extensions=extensions)
            return inner.handle_request(moved)

        def close(self) -> None:
            inner.close()

    return _Pinned()


# ---------------------------------------------------------------------------------------------- process guard
_GUARD_LOCK = threading.Lock()
PORT_CACHE_S = 2.0
_GUARD: dict[str, Any] = {}


def install_connect_guard(policy: EgressPolicy, *, local_ports: Callable[[], Iterable[int]] | None = None) -> None:
    """Refuse, in this whole process, any Python ``socket.connect`` to an address ``policy`` refuses (an audit
    hook: it cannot be removed, so call it only in a process that exists for one evaluation, the portal's worker).
    Loopback connections are allowed to the ports ``local_ports()`` names (the verifier's own listeners: its
    recording proxies), and to any port when loopback is allow-listed; the ports are re-read at most every
    PORT_CACHE_S for a port already seen (a scan of /proc takes milliseconds, and a party kit that opens one
    connection per request must not pay it each time: the performance tests time that traffic). Names are not
    resolved here: a connect given a host name instead of an address (rare: create_connection, asyncio and httpx
    resolve first) is refused. Idempotent for one policy; a second policy is refused."""
    with _GUARD_LOCK:
        if _GUARD:
            if _GUARD["policy"] is not policy:
                raise RuntimeError("install_connect_guard: a guard with another policy is already installed")
            return
        _GUARD["policy"] = policy
    seen: dict[str, Any] = {"ports": frozenset(), "at": float("-inf")}

    def own_port(port: int) -> bool:
        if local_ports is None:
            return False
        now = time.monotonic()
        if port in seen["ports"] and now - seen["at"] < PORT_CACHE_S:
            return True
        ports = frozenset(local_ports())
        seen["ports"], seen["at"] = ports, now
        return port in ports

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect" or len(args) < 2:
            return
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return
        try:
            ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        except ValueError:
            raise EgressRefused(str(address[0]), f"connect to {address[0]!r}: not an IP address") from None
        if policy.allows_ip(ip, int(address[1])):
            return
        if ip.is_loopback and own_port(int(address[1])):
            return
        raise EgressRefused(str(ip), f"connect to {ip} port {address[1]} refused by the portal's egress policy "
                            f"({address_class(ip)})", address=str(ip), reason=address_class(ip) or "refused")

    sys.addaudithook(hook)


def own_listening_ports() -> set[int]:
    """The TCP ports this process listens on (Linux /proc; empty elsewhere): the verifier's own proxies and, in
    a worker that started a local platform, that platform's servers."""
    import os

    inodes: set[str] = set()
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports: set[int] = set()
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            try:
                lines = open(table, encoding="ascii").read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports
    except OSError:
        return set()
