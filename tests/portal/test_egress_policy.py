"""The portal's egress policy refuses internal targets in every disguise, unless an administrator allow-lists them.

Attack tests: an applicant names the endpoint (and its platform names further addresses); each of these must be
refused with an EgressRefused naming the host and the address class, before any connection is made.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from sampan.verify.egress import EgressPolicy, EgressRefused, address_class


def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"the policy asked DNS about {host!r}: an IP literal must be classified without it")


INTERNAL_URLS = [
    ("http://127.0.0.1:8080/", "loopback"),
    ("http://127.8.9.10/", "loopback"),
    ("http://2130706433/", "loopback"),  # decimal IPv4
    ("http://0x7f000001/", "loopback"),  # hex IPv4
    ("http://0177.0.0.1/", "loopback"),  # octal IPv4
    ("http://127.1/", "loopback"),  # short form
    ("http://[::1]:9000/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped IPv6
    ("http://[::ffff:a9fe:a9fe]/", "link-local"),  # mapped metadata address, hex spelling
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 around 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 around 169.254.169.254
    ("http://0.0.0.0:80/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fe80::1]/", "link-local"),
    ("http://10.0.0.5:5432/", "private"),
    ("http://172.16.3.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://100.64.0.1/", "shared"),
    ("http://224.0.0.251/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
]


@pytest.mark.parametrize(("url", "kind"), INTERNAL_URLS)
def test_internal_targets_are_refused_without_dns(url: str, kind: str) -> None:
    with pytest.raises(EgressRefused) as caught:
        EgressPolicy(resolver=_no_dns).pin(url)
    assert kind in caught.value.reason
    assert kind in str(caught.value) and "allow-list" in str(caught.value)


def test_a_name_resolving_to_an_internal_address_is_refused_by_class_without_the_address() -> None:
    """R17-PORTAL-7: the message (what an applicant reads) names the host and the class, never the internal
    address the operator's DNS gave; `.address` keeps it for the server's log."""
    for answer, kind in (("169.254.169.254", "link-local"), ("::ffff:10.20.30.40", "private")):
        policy = EgressPolicy(resolver=lambda host, port, a=answer: [a])
        with pytest.raises(EgressRefused) as caught:
            policy.pin("https://metadata.evil.example/")
        message = str(caught.value)
        assert "metadata.evil.example" in message and kind in message
        assert answer not in message and "10.20.30.40" not in message and answer not in caught.value.reason
        assert caught.value.host == "metadata.evil.example" and caught.value.address == str(ip_address(answer))


def test_an_address_port_entry_opens_that_port_only() -> None:
    """R17-PORTAL-2: "127.0.0.1:8443" opens loopback on 8443 only (the embedded portal's local platforms)."""
    policy = EgressPolicy(["127.0.0.1:8443", "[::1]:8443", "bench.internal.example:443"],
                          resolver=lambda host, port: ["10.1.2.3"])
    assert policy.pin("http://127.0.0.1:8443/").allow_listed
    assert policy.pin("http://[::1]:8443/").ip == "::1"
    assert policy.pin("https://bench.internal.example/").ip == "10.1.2.3"
    for url in ("http://127.0.0.1:8444/", "http://127.0.0.1/", "http://[::1]:22/", "https://bench.internal.example:8443/",
                "http://[::ffff:127.0.0.1]:22/"):
        with pytest.raises(EgressRefused):
            policy.pin(url)
    assert policy.allows_ip("127.0.0.1", 8443) and not policy.allows_ip("127.0.0.1", 5432)
    assert not policy.allows_ip("127.0.0.1")  # no port known: only CIDRs count
    assert policy.allow == ["127.0.0.1:8443", "[::1]:8443", "bench.internal.example:443"]
    assert EgressPolicy(policy.allow).allow == policy.allow  # what the worker rebuilds
    with pytest.raises(ValueError, match="allow-list"):
        EgressPolicy(["127.0.0.1:70000"])


def test_one_internal_answer_among_public_ones_refuses_the_name() -> None:
    policy = EgressPolicy(resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(EgressRefused, match="private"):
        policy.pin("https://mixed.example/")


def test_public_name_is_pinned_to_its_checked_address() -> None:
    policy = EgressPolicy(resolver=lambda host, port: ["93.184.216.34"])
    pinned = policy.pin("https://Bench.Example.com:8443/bench/v1")
    assert (pinned.host, pinned.port, pinned.ip, pinned.scheme) == ("bench.example.com", 8443, "93.184.216.34",
                                                                    "https")
    assert not pinned.allow_listed and pinned.address == "93.184.216.34:8443"


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://example.com:70/",
                                 "http://user:pw@example.com/", "http://user@example.com/", "http://exa mple.com/",
                                 "http://[::1/", "http://example.com:99999/", "https:///nohost"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        EgressPolicy(resolver=lambda host, port: ["93.184.216.34"]).pin(url)


def test_unresolvable_name_is_refused_clearly() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(EgressRefused, match="does not resolve") as caught:
        EgressPolicy(resolver=fail).pin("https://nowhere.example/")
    assert caught.value.reason == "unresolved"


def test_allow_list_cidr_admits_only_what_it_names() -> None:
    policy = EgressPolicy(["127.0.0.1/32", "::1"], resolver=_no_dns)
    pinned = policy.pin("http://127.0.0.1:9000/")
    assert pinned.allow_listed and pinned.is_loopback
    assert policy.pin("http://[::1]:9000/").ip == "::1"
    for url in ("http://127.0.0.2/", "http://10.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(EgressRefused):
            policy.pin(url)
    assert policy.allow == ["127.0.0.1/32", "::1/128"]


def test_allow_listed_host_name_admits_its_internal_answer_still_pinned() -> None:
    answers = iter([["10.1.2.3"], ["10.9.9.9"]])
    policy = EgressPolicy(["bench.internal.example"], resolver=lambda host, port: next(answers))
    pinned = policy.pin("https://bench.internal.example/")
    assert pinned.ip == "10.1.2.3" and pinned.allow_listed
    with pytest.raises(EgressRefused):  # the name list does not open the address to other names
        EgressPolicy(["bench.internal.example"], resolver=lambda host, port: ["10.1.2.3"]).pin("https://x.example/")


@pytest.mark.parametrize("entry", ["not a host!", "http://x", "10.0.0.0/99"])
def test_malformed_allow_list_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="allow-list"):
        EgressPolicy([entry])


def test_platform_named_raw_addresses_are_checked_too() -> None:
    policy = EgressPolicy(["127.0.0.1/32"], resolver=_no_dns)
    for address in ("169.254.169.254:80", "[::1]:22", "10.0.0.1:6379", "0.0.0.0:8080", "[::ffff:10.0.0.1]:5432"):
        with pytest.raises(EgressRefused):
            policy.pin_address(address)
    pinned = policy.pin_address("127.0.0.1:4000")
    assert pinned.address == "127.0.0.1:4000" and pinned.scheme == "tcp"
    with pytest.raises(EgressRefused, match="host:port"):
        policy.pin_address("127.0.0.1")


def test_address_class_of_public_addresses_is_none() -> None:
    for ip in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert address_class(ip) is None, ip
    assert EgressPolicy().allows_ip("8.8.8.8") and not EgressPolicy().allows_ip("127.0.0.1")


def test_own_ports_open_loopback_only_on_those_ports() -> None:
    policy = EgressPolicy(resolver=_no_dns, own_ports=lambda: {4000, 4001})
    assert policy.pin("http://127.0.0.1:4000/").allow_listed
    assert policy.pin_address("127.0.0.1:4001").ip == "127.0.0.1"
    for target in ("127.0.0.1:6379", "127.0.0.1:22", "10.0.0.1:4000", "169.254.169.254:4000"):
        with pytest.raises(EgressRefused):
            policy.pin_address(target)
