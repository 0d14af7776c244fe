"""Parse the authority of a scanned URL the way a browser does, so the checks see the host a phone will contact.

Kept apart from `sampan.qr.quishing` (which judges) because the parsing rules are fiddly and tested on their
own: WHATWG URL rules for special schemes (backslash is a slash, tabs and newlines are dropped, the *last* `@`
ends the user info), IPv4 hosts in decimal/hex/octal/short forms (`http://3232235777/`, `0x7f.1`), bracketed
IPv6, percent-encoded hosts, full-width dots, and IDNA the way browsers do it: UTS #46 non-transitional
processing (WHATWG URL), through the `idna` package's mapping table. Non-transitional matters: IDNA 2003 (the
standard library's codec) maps the "deviation" characters ß -> ss and ς -> σ, so `boßini.com` would be judged as
`bossini.com` while a browser opens `xn--boini-mqa.com`, a different domain anyone can register. Without the
`idna` package (not a declared dependency of the `qr` extra) the IDNA 2003 codec is used and any host with a
deviation character (ß, ς, ZWJ, ZWNJ) is refused, since its two readings differ.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["Authority", "FAKE_DELIMITERS", "HostError", "fake_delimiters", "parse_ipv4", "split_url", "to_idna"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_DOTS = re.compile("[\u3002\uff0e\uff61]")
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\"'`{}]")
_DEVIATIONS = {"\u00df": "sharp s", "\u1e9e": "capital sharp s", "\u03c2": "final sigma",
               "\u200c": "zero-width non-joiner", "\u200d": "zero-width joiner"}
# Characters a host may carry (UTS #46 keeps them, or a browser maps them) that look like URL delimiters: a host
# `hsbc.com.hk\u2044login.evil.example` reads as "hsbc.com.hk/login..." but is a subdomain of evil.example.
FAKE_DELIMITERS: dict[str, str] = {
    "\u2044": "/", "\u2215": "/", "\u29f8": "/", "\u2cc6": "/", "\u2f03": "/", "\u31d3": "/", "\u3033": "/",
    "\u1735": "/", "\u0338": "/", "\u0337": "/", "\uff0f": "/", "\ufe68": "\\", "\u29f9": "\\", "\u2216": "\\",
    "\uff3c": "\\", "\u2236": ":", "\ua789": ":", "\u02d0": ":", "\u02f8": ":", "\u0589": ":", "\u05c3": ":",
    "\ufe13": ":", "\ufe55": ":", "\uff1a": ":", "\ua4fd": ":", "\ufe6b": "@", "\uff20": "@", "\ufe56": "?",
    "\uff1f": "?", "\ufe16": "?", "\ufe5f": "#", "\uff03": "#",
}


class HostError(ValueError):
    """A host or authority no browser would accept (the caller turns it into a blocking finding)."""


@dataclass(frozen=True)
class Authority:
    """A URL split into the parts the checks need; `host` is as written (percent-decoded, not yet IDNA'd)."""

    scheme: str | None  # lower-cased, None when the text had no scheme
    slashes: int  # how many slashes followed the scheme (2 is normal)
    backslashes: bool  # backslashes before or inside the authority (browsers read them as slashes)
    userinfo: str | None  # text before the last '@' of the authority
    host: str
    port: int | None
    ipv6: bool
    host_was_encoded: bool  # the host carried %xx escapes
    rest: str  # path, query and fragment as written


def split_url(text: str) -> Authority:
    """Split `text` like a browser's URL parser for http(s) (lenient about slashes and backslashes)."""
    cleaned = re.sub(r"[\t\n\r]", "", text.strip(_C0_AND_SPACE))
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise HostError("control characters inside the link")
    match = _SCHEME.match(cleaned)
    if match and "." in match.group(1) and cleaned[match.end():][:1].isdigit():
        match = None  # `www.example.com:8443/x` is a host and a port, not a scheme
    scheme = match.group(1).lower() if match else None
    rest = cleaned[match.end():] if match else cleaned
    web = scheme in (None, "http", "https")
    written = rest
    if web:
        rest = rest.replace("\\", "/")  # WHATWG: a backslash is a slash in http(s) URLs
    stripped = rest.lstrip("/")
    slashes = len(rest) - len(stripped)
    cut = min((i for i in (stripped.find(c) for c in "/?#") if i >= 0), default=len(stripped))
    backslashes = web and "\\" in written[:slashes + cut + 1]  # before, or ending, the authority
    netloc, tail = stripped[:cut], stripped[cut:]
    userinfo, at, hostport = netloc.rpartition("@")
    host, port, ipv6 = _host_port(hostport)
    try:
        decoded = unquote(host, errors="strict") if "%" in host else host
    except UnicodeDecodeError as exc:
        raise HostError(f"host {host!r} has %-escapes that are not UTF-8") from exc
    return Authority(scheme=scheme, slashes=slashes, backslashes=bool(backslashes),
                     userinfo=userinfo if at else None, host=decoded, port=port, ipv6=ipv6,
                     host_was_encoded=decoded != host, rest=tail)


def _host_port(hostport: str) -> tuple[str, int | None, bool]:
    """Host and port of `host[:port]` or `[v6][:port]`; raises HostError on a bad port or bracket."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise HostError(f"unclosed '[' in the host {hostport!r}")
        host, after = hostport[1:end], hostport[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise HostError(f"not an IPv6 address: [{host}]") from exc
        if after and not after.startswith(":"):
            raise HostError(f"text after the IPv6 address: {after!r}")
        return host.lower(), _port(after[1:]) if after else None, True
    host, colon, port = hostport.partition(":")
    return host, _port(port) if colon else None, False


def _port(text: str) -> int | None:
    """A port number, None for an empty port (which means the default)."""
    if text == "":
        return None
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise HostError(f"bad port {text!r}")
    return int(text)


def _ipv4_part(part: str) -> int | None:
    """One part of an IPv4 host in WHATWG's lenient syntax: decimal, 0x-hex or 0-led octal; None if not a number."""
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
        if digits == "":
            return 0
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits.isascii() or not digits.isalnum():
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None


def parse_ipv4(host: str) -> str | None:
    """The dotted IPv4 address a browser reads from `host` (`3232235777` -> `192.168.1.1`), None for a name.

    WHATWG rule: a host whose last label is a number is an IPv4 address; a malformed one raises HostError."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not parts[-1] or (_ipv4_part(parts[-1]) is None and not parts[-1].isdigit()):
        return None
    numbers = [_ipv4_part(p) if p else None for p in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise HostError(f"host {host!r} ends in a number but is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise HostError(f"IPv4 address {host!r} out of range")
    value = values[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(values[:-1]))
    return str(ipaddress.IPv4Address(value))


def fake_delimiters(host: str) -> list[tuple[str, str]]:
    """(character, the delimiter it imitates) for each slash/colon/'@'/'?'/'#' look-alike in a host."""
    return [(ch, FAKE_DELIMITERS[ch]) for ch in dict.fromkeys(host) if ch in FAKE_DELIMITERS]


def to_idna(host: str) -> tuple[str, str, bool]:
    """(ASCII/punycode host, Unicode host, any label internationalised) for a domain name; raises HostError.

    UTS #46 non-transitional processing as browsers do (WHATWG URL: no STD3 rules, no hyphen checks, bidi and
    joiner checks on); see the module docstring for the fallback without the `idna` package."""
    host = _DOTS.sub(".", host)
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise HostError("empty host")
    try:
        import idna
    except ImportError:  # pragma: no cover - idna is installed wherever the test extras are
        return _to_idna_2003(host)
    return _to_idna_uts46(host, idna)


def _to_idna_uts46(host: str, idna: Any) -> tuple[str, str, bool]:
    """UTS #46 non-transitional mapping of the whole host, then punycode label by label."""
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError) as exc:
        raise HostError(f"host {host!r} has a character no browser accepts in a host ({exc})") from exc
    mapped = mapped[:-1] if mapped.endswith(".") else mapped
    ascii_labels: list[str] = []
    unicode_labels: list[str] = []
    for label in mapped.split("."):
        if not label:
            raise HostError(f"empty label in the host {host!r}")
        if label.startswith("xn--"):
            try:
                uni = label[4:].encode("ascii").decode("punycode")
            except UnicodeError as exc:
                raise HostError(f"label {label!r} is not valid punycode") from exc
            try:
                remapped = idna.uts46_remap(uni, std3_rules=False, transitional=False)
            except (idna.IDNAError, UnicodeError) as exc:
                raise HostError(f"label {label!r} decodes to a character no browser accepts ({exc})") from exc
            if uni.isascii() or remapped != uni or _punycode(uni) != label:
                raise HostError(f"label {label!r} does not round-trip through IDNA (UTS #46): not a canonical name")
            _check_unicode_label(uni, label, idna)
            asc = label
        elif label.isascii():
            asc = uni = label
        else:
            _check_unicode_label(label, label, idna)
            asc, uni = _punycode(label), label
        if _FORBIDDEN_HOST.search(asc) or len(asc) > 63:
            raise HostError(f"label {label!r} has characters or a length no host may have")
        ascii_labels.append(asc)
        unicode_labels.append(uni)
    return ".".join(ascii_labels), ".".join(unicode_labels), any(a.startswith("xn--") for a in ascii_labels)


def _punycode(label: str) -> str:
    return "xn--" + label.encode("punycode").decode("ascii")


def _check_unicode_label(label: str, written: str, idna: Any) -> None:
    """UTS #46 validity checks browsers apply: no leading combining mark, bidi rule, joiner context."""
    if unicodedata.category(label[0]).startswith("M"):
        raise HostError(f"label {written!r} starts with a combining mark")
    try:
        idna.core.check_bidi(label)
    except (idna.IDNAError, UnicodeError) as exc:
        raise HostError(f"label {written!r} breaks the bidi rule ({exc})") from exc
    for pos, ch in enumerate(label):
        if ch in "\u200c\u200d" and not idna.core.valid_contextj(label, pos):
            raise HostError(f"label {written!r} has a zero-width joiner out of context")


def _to_idna_2003(host: str) -> tuple[str, str, bool]:
    """The standard library's IDNA 2003 codec, refusing deviation characters (read differently by browsers)."""
    for ch, name in _DEVIATIONS.items():
        if ch in host:
            raise HostError(f"host {host!r} has a {name} (U+{ord(ch):04X}): IDNA 2003 and browsers (UTS #46) read "
                            "it as two different domains")
    ascii_labels: list[str] = []
    unicode_labels: list[str] = []
    idn = False
    for label in host.split("."):
        if not label:
            raise HostError(f"empty label in the host {host!r}")
        try:
            if label.isascii():
                low = label.lower()
                uni = low.encode("ascii").decode("idna") if low.startswith("xn--") else low
                asc = uni.encode("idna").decode("ascii") if low.startswith("xn--") else low
                idn = idn or low.startswith("xn--")
            else:
                asc = label.encode("idna").decode("ascii")
                uni = asc.encode("ascii").decode("idna") if asc.startswith("xn--") else asc
                idn = idn or asc.startswith("xn--")
        except UnicodeError as exc:
            raise HostError(f"label {label!r} is not a valid internationalised name ({exc})") from exc
        if _FORBIDDEN_HOST.search(asc) or len(asc) > 63:
            raise HostError(f"label {label!r} has characters or a length no host may have")
        ascii_labels.append(asc)
        unicode_labels.append(uni)
    return ".".join(ascii_labels), ".".join(unicode_labels), idn
