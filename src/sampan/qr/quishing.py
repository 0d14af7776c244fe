"""Quishing checks for a URL read from a QR code: show where it really goes and say why it may be a trap.

A pasted-over QR code on a parking meter or a bank letter is a phishing link the user cannot read. `check_url`
parses the text the way a browser would (`sampan.qr._hosts`), shows the full destination in both its punycode and
Unicode forms, and lists findings, each with a severity:

* block: not https; '@' user info in the authority; invisible or bidi-control characters; a raw IPv4/IPv6
  host (also decimal, hex and octal IPv4); a malformed host; a mixed-script label (Latin with Cyrillic or
  Greek); slash, colon, '@', '?' or '#' look-alikes inside the host (`hsbc.com.hk⁄login.evil.example`); a
  host whose skeleton equals a protected brand's (homoglyphs, digit tricks); a registrable label
  within Damerau-Levenshtein distance 2 of a brand's (1 for a 4-letter brand, none under 4 letters: those only
  get the skeleton checks); a brand's whole domain folded into a label (`hsbc-com-hk.top`) or placed in front
  of another domain (`hsbc.com.hk.evil.example`).
* warn: a non-default port; a known URL shortener (it hides the destination); a brand inside a label or a
  subdomain; a whole-script confusable label; a %-encoded host; a link with no scheme; odd slashes or
  backslashes; a brand's domain in the path; a redirect parameter (`?url=https://...`, protocol-relative
  `?url=//...`, up to twice %-encoded) whose target is itself flagged, or that takes an allow-listed site off the
  allow-list; a host with no registrable domain.
* info: allow-listed; internationalised host (both forms shown); host normalised; not on the allow-list; each
  redirect target found (one level, with its own verdict).

Hosts are read with UTS #46 non-transitional IDNA like browsers (`boßini.com` is `xn--boini-mqa.com`, not
`bossini.com`; see `sampan.qr._hosts`).

The registrable domain comes from the public-suffix list bundled with `publicsuffixlist` (no network). An
allow-listed registrable domain (or any host under an allow-listed restricted suffix such as `gov.hk`) skips the
brand look-alike checks; the scheme, '@', IP and port checks still apply. These are heuristics: a brand-new
phishing domain that resembles no protected brand and breaks no rule passes as "ok" unless the allow-list is
strict, so "ok" means "no known trick", not "safe".
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

from sampan.errors import ConfigError
from sampan.qr._hosts import HostError, fake_delimiters, parse_ipv4, split_url, to_idna
from sampan.qr.confusables import is_whole_script_confusable, mixed_script, skeleton

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "AllowList", "Finding", "QuishingConfigError", "UrlReport", "Verdict", "check_url", "verdict_of",
    "damerau_levenshtein", "registrable_domain",
    "SHORTENERS", "HK_ALLOWED_DOMAINS", "HK_ALLOWED_SUFFIXES", "HK_BRANDS", "hong_kong_allow_list",
]

Severity = Literal["info", "warn", "block"]
Verdict = Literal["ok", "warn", "block"]

# Well-known public URL shorteners and QR redirect services (registrable domains); a hand-kept list.
SHORTENERS: frozenset[str] = frozenset({
    "bit.ly", "bitly.com", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "v.gd", "buff.ly", "rebrand.ly",
    "cutt.ly", "shorturl.at", "tiny.cc", "rb.gy", "s.id", "bl.ink", "t.ly", "lnkd.in", "qrco.de", "surl.li",
    "short.io", "shorte.st", "adf.ly", "bit.do", "clck.ru", "u.to", "x.co", "tr.im", "qr.net", "urlz.fr",
    "t.cn", "dwz.cn", "url.cn", "shorturl.asia", "reurl.cc", "ppt.cc", "lihi.cc", "me2.do", "han.gl", "n9.cl",
    "soo.gd", "tinyurl.hk", "gg.gg", "2.gp", "qrs.ly", "linktr.ee", "wa.me",
})

# Example allow-list and brand list for Hong Kong banks and government (illustrative, not authoritative).
HK_ALLOWED_DOMAINS: tuple[str, ...] = (
    "hsbc.com.hk", "hsbc.com", "hsbcnet.com", "bochk.com", "boc.cn", "hangseng.com", "sc.com", "bea.com",
    "dbs.com.hk", "citibank.com.hk", "fps.hk", "hkicl.com.hk", "octopus.com.hk", "hkex.com.hk", "sfc.hk",
    "mtr.com.hk", "hkpost.hk", "hongkongpost.hk", "clp.com.hk", "hkelectric.com", "towngas.com",
)
# Restricted registries whose every registrant is a government body (gov.hk and its Chinese form 政府.香港).
HK_ALLOWED_SUFFIXES: tuple[str, ...] = ("gov.hk", "政府.香港")
HK_BRANDS: tuple[str, ...] = (
    "hsbc.com.hk", "bochk.com", "hangseng.com", "sc.com", "bea.com", "dbs.com.hk", "citibank.com.hk",
    "fps.hk", "octopus.com.hk", "hkma.gov.hk", "gov.hk", "hkpost.hk", "hongkongpost.hk", "hkelectric.com",
)

_RANK = {"info": 0, "warn": 1, "block": 2}
_VERDICT: dict[int, Verdict] = {0: "ok", 1: "warn", 2: "block"}
# A parameter value that is a URL: scheme-ful, or protocol-relative (`?url=//evil.example`, also with
# backslashes, which browsers read as slashes), judged after up to two rounds of %-decoding.
_EMBEDDED = re.compile(r"(?:^|[=&?])((?:https?|ftp):[^&#]*|[/\\]{2}[^/\\&#][^&#]*)", re.IGNORECASE)


def _decoded(text: str, rounds: int = 2) -> str:
    """`text` %-decoded up to `rounds` times (double-encoded redirect targets such as `https%253A%252F%252F`)."""
    for _ in range(rounds):
        if "%" not in text:
            break
        text = unquote(text)
    return text


def _embedded_targets(rest: str) -> list[str]:
    """Absolute URLs carried in the query or path parameters (protocol-relative ones get https:)."""
    out = []
    for match in _EMBEDDED.finditer(_decoded(rest)):
        target = match.group(1)
        out.append("https:" + target if target[:1] in "/\\" else target)
    return out


@dataclass(frozen=True)
class Finding:
    """One reason a link is (or is not) trusted; `code` is stable for scripts, `message` is for a person."""

    code: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class UrlReport:
    """What `check_url` found. `full_destination` is the normalised link with the host a browser contacts
    (punycode); `unicode_destination` is the same link as a person reads it; `display()` shows both."""

    text: str
    full_destination: str
    unicode_destination: str
    registrable: str | None
    findings: list[Finding] = field(default_factory=list)
    verdict: Verdict = "ok"

    def display(self) -> str:
        """One line for a person: the destination, and its Unicode form when that looks different."""
        if self.unicode_destination != self.full_destination:
            return f"{self.full_destination} (shown as {self.unicode_destination})"
        return self.full_destination


@dataclass(frozen=True)
class AllowList:
    """Trusted destinations: registrable domains (`hsbc.com.hk`) and restricted suffixes (`gov.hk`) whose every
    host is trusted. `strict=True` turns "not on the allow-list" into a warning (for payment and bank contexts)."""

    domains: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    strict: bool = False

    @classmethod
    def of(cls, domains: Iterable[str], *, suffixes: Iterable[str] = (), strict: bool = False) -> AllowList:
        """An allow-list from entries such as `hsbc.com.hk`, `https://www.sc.com/hk` or `香港.hk` (normalised)."""
        return cls(frozenset(_normalise_entry(d) for d in domains), frozenset(_normalise_entry(s) for s in suffixes),
                   strict)

    def allows(self, host_ascii: str, registrable: str | None) -> bool:
        """True when the host's registrable domain is listed or the host sits under a listed suffix."""
        if registrable is not None and registrable in self.domains:
            return True
        return any(host_ascii == s or host_ascii.endswith("." + s) for s in self.suffixes)


def hong_kong_allow_list(*, strict: bool = False) -> AllowList:
    """The example allow-list of Hong Kong bank, payment and government domains."""
    return AllowList.of(HK_ALLOWED_DOMAINS, suffixes=HK_ALLOWED_SUFFIXES, strict=strict)


class QuishingConfigError(ConfigError):
    """An allow-list or brand entry that is not a domain name; names the entry."""


def _normalise_entry(entry: str, what: str = "allow-list entry") -> str:
    """`https://www.SC.com/hk` -> `sc.com`-style host in punycode (leading `www.` and any path dropped)."""
    text = entry.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    host = re.split(r"[/?#:]", text, maxsplit=1)[0]
    try:
        ascii_host = to_idna(host)[0]
    except HostError as exc:
        raise QuishingConfigError(f"{what} {entry!r} is not a domain name: {exc}") from exc
    return ascii_host[4:] if ascii_host.startswith("www.") else ascii_host


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    """The public-suffix list bundled with the `publicsuffixlist` package (loaded once, offline)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registrable_domain(host_ascii: str) -> str | None:
    """The registrable domain ("eTLD+1") of an ASCII host, None when the host is itself a public suffix."""
    result = _psl().privatesuffix(host_ascii.lower())
    return str(result) if result is not None else None


def damerau_levenshtein(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (optimal-string-alignment form of Damerau-Levenshtein)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


@dataclass(frozen=True)
class _Brand:
    domain: str  # ASCII domain as given (`hsbc.com.hk`, `gov.hk`)
    registrable: str | None
    label: str  # registrable label (`hsbc`); "" for a brand that is a public suffix (`gov.hk`)
    skel: str
    compact: str  # the whole domain without dots (`hsbccomhk`)


@functools.lru_cache(maxsize=16)
def _brands(domains: tuple[str, ...]) -> tuple[_Brand, ...]:
    out = []
    for domain in domains:
        ascii_domain = _normalise_entry(domain, "brand")
        reg = registrable_domain(ascii_domain)
        label = reg.split(".")[0] if reg else ""
        uni_label = to_idna(label)[1] if label else ""
        out.append(_Brand(ascii_domain, reg, label, skeleton(uni_label), skeleton(ascii_domain.replace(".", ""))))
    return tuple(out)


def _max_distance(brand_label: str) -> int:
    """Distance budget for typosquats: none under 4 letters (`bea` is one edit from `sea`, `tea`, `bee`), 1 for
    4 letters, 2 from 5 letters on."""
    n = len(brand_label)
    return 0 if n < 4 else 1 if n == 4 else 2


def _brand_findings(host_ascii: str, host_unicode: str, registrable: str, brands: Sequence[_Brand]) -> list[Finding]:
    """Look-alike checks of a host that is not allow-listed against each protected brand."""
    out: list[Finding] = []
    reg_label_uni = to_idna(registrable)[1].split(".")[0]
    label_skel = skeleton(reg_label_uni)
    flat = label_skel.replace("-", "")
    sub = host_ascii[: -len(registrable)].rstrip(".") if host_ascii != registrable else ""
    sub_labels = [skeleton(to_idna(x)[1]) for x in sub.split(".")] if sub else []
    for b in brands:
        if registrable == b.registrable or host_ascii == b.domain or host_ascii.endswith("." + b.domain):
            continue  # the brand itself (listed as a brand but not allowed): nothing to compare
        name = b.domain
        if b.skel and label_skel == b.skel:
            if reg_label_uni != b.label:
                out.append(Finding("homoglyph", "block", f"{host_unicode} looks like {name} but is a different "
                                   f"domain ({host_ascii})"))
            else:
                sev: Severity = "block" if len(b.label) >= 4 else "warn"
                out.append(Finding("brand-other-suffix", sev, f"{registrable} uses the name of {name} on another "
                                   "suffix and is not on the allow-list"))
            continue
        if flat in (b.compact, b.skel.replace("-", "")) and flat:
            out.append(Finding("brand-folded", "block", f"{registrable} folds {name} into one label"))
            continue
        budget = _max_distance(b.label)
        if budget and abs(len(label_skel) - len(b.skel)) <= budget:
            dist = damerau_levenshtein(label_skel, b.skel)
            if 0 < dist <= budget:
                out.append(Finding("typosquat", "block", f"{registrable} is {dist} edit(s) from {name}"))
                continue
        tokens = label_skel.split("-")
        if ((len(b.skel) >= 4 and b.skel in flat) or (len(b.skel) >= 3 and b.skel in tokens)
                or (len(b.compact) >= 5 and b.compact in flat)):
            out.append(Finding("brand-in-domain", "warn", f"{registrable} contains the brand name of {name}"))
            continue
        if sub and (f".{sub}.".find(f".{name}.") >= 0 or (b.compact and b.compact in sub.replace(".", ""))):
            out.append(Finding("brand-subdomain", "block", f"{name} is only a subdomain of {registrable}; the real "
                               f"site is {registrable}"))
            continue
        if b.skel and any(s == b.skel or (len(b.skel) >= 4 and b.skel in s) for s in sub_labels):
            out.append(Finding("brand-in-subdomain", "warn", f"a subdomain names {name} but the site is {registrable}"))
    return out


def verdict_of(findings: Sequence[Finding]) -> Verdict:
    """The verdict of a list of findings: its worst severity ("info" reads as "ok")."""
    return _VERDICT[max((_RANK[f.severity] for f in findings), default=0)]


def check_url(text: str, *, allow: AllowList | None = None, brands: Sequence[str] | None = None) -> UrlReport:
    """Judge a URL read from a QR code. `allow` and `brands` default to the Hong Kong examples above."""
    allow = hong_kong_allow_list() if allow is None else allow
    return _check(text, allow, tuple(HK_BRANDS if brands is None else brands), follow_redirects=True)


def _check(text: str, allow: AllowList, brands: tuple[str, ...], *, follow_redirects: bool) -> UrlReport:
    """`check_url` itself; a redirect target found in the query is checked once, without following further."""
    brand_list = _brands(brands)
    findings: list[Finding] = []

    def report(dest: str, uni: str, reg: str | None) -> UrlReport:
        return UrlReport(text, dest, uni, reg, findings, verdict_of(findings))

    hidden = sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) == "Cf"})
    if hidden:
        findings.append(Finding("invisible", "block", f"invisible or text-direction characters ({', '.join(hidden)}) "
                                "can make the link read differently from where it goes"))
    try:
        auth = split_url(text)
    except HostError as exc:
        findings.append(Finding("malformed", "block", f"cannot read the link: {exc}"))
        return report(text.strip(), text.strip(), None)
    scheme = auth.scheme
    if scheme is None:
        findings.append(Finding("no-scheme", "warn", "no scheme: a phone may open this as plain http"))
    elif scheme == "http":
        findings.append(Finding("not-https", "block", "http, not https: the page and anything typed into it travel "
                                "unencrypted and can be altered"))
    elif scheme != "https":
        findings.append(Finding("scheme", "block", f"{scheme}: is not a web link (https only)"))
        return report(text.strip(), text.strip(), None)
    if auth.backslashes:
        findings.append(Finding("backslash", "warn", "backslashes in the link's authority (read as slashes)"))
    if auth.slashes != 2 and scheme is not None:
        findings.append(Finding("odd-slashes", "warn", f"{auth.slashes} slashes after '{scheme}:' (normally 2)"))
    if auth.userinfo is not None:
        findings.append(Finding("userinfo", "block", f"'{auth.userinfo}@' is a user name, not the site: the link "
                                f"really goes to {auth.host}"))
    fakes = fake_delimiters(auth.host)
    if fakes:
        shown = ", ".join(f"U+{ord(ch):04X} looks like '{looks}'" for ch, looks in fakes)
        findings.append(Finding("fake-delimiter", "block", f"the host {auth.host!r} contains look-alikes of URL "
                                f"delimiters ({shown}): the part before them is not the site"))
    if auth.host_was_encoded:
        findings.append(Finding("encoded-host", "warn", "the host is %-encoded (hides the name)"))
    default_port = 80 if scheme == "http" else 443
    port = f":{auth.port}" if auth.port is not None and auth.port != default_port else ""
    if port:
        findings.append(Finding("port", "warn", f"non-default port {auth.port}"))
    shown_scheme = scheme or "http"
    try:
        ipv4 = None if auth.ipv6 else parse_ipv4(auth.host)
        if auth.ipv6 or ipv4:
            literal = f"[{auth.host}]" if auth.ipv6 else ipv4
            note = "" if auth.ipv6 or auth.host == ipv4 else f" (written as {auth.host})"
            findings.append(Finding("ip-host", "block", f"raw IP address {literal}{note} instead of a domain name"))
            dest = f"{shown_scheme}://{literal}{port}{auth.rest}"
            return report(dest, dest, None)
        host_ascii, host_unicode, idn = to_idna(auth.host)
    except HostError as exc:
        findings.append(Finding("malformed", "block", f"bad host: {exc}"))
        return report(text.strip(), text.strip(), None)
    dest = f"{shown_scheme}://{host_ascii}{port}{auth.rest}"
    uni_dest = f"{shown_scheme}://{host_unicode}{port}{unquote(auth.rest)}"
    if idn:
        findings.append(Finding("idn", "info", f"internationalised host {host_unicode} = {host_ascii}"))
    elif auth.host.rstrip(".") != host_ascii:
        findings.append(Finding("normalised", "info", f"host written as {auth.host!r} means {host_ascii}"))
    for label in host_unicode.split("."):
        if mixed_script(label):
            findings.append(Finding("mixed-script", "block", f"label {label!r} mixes scripts (homoglyph trick)"))
        elif is_whole_script_confusable(label):
            findings.append(Finding("whole-script", "warn", f"label {label!r} is written entirely in look-alike "
                                    f"letters of another script (reads as {skeleton(label)!r})"))
    registrable = registrable_domain(host_ascii)
    if registrable is None:
        findings.append(Finding("no-registrable", "warn", f"{host_ascii} has no registrable domain (a bare public "
                                "suffix or a local name)"))
    elif allow.allows(host_ascii, registrable):
        findings.append(Finding("allow-listed", "info", f"{registrable} is on the allow-list"))
    else:
        findings.extend(_brand_findings(host_ascii, host_unicode, registrable, brand_list))
        if registrable in SHORTENERS:
            findings.append(Finding("shortener", "warn", f"{registrable} is a URL shortener: the destination is "
                                    "hidden until it is opened"))
        sev: Severity = "warn" if allow.strict else "info"
        findings.append(Finding("not-allow-listed", sev, f"{registrable} is not on the allow-list"))
        path = _EMBEDDED.sub("", _decoded(auth.rest)).lower()  # redirect targets are judged on their own below
        for b in brand_list:
            if "." in b.domain and re.search(rf"(?<![a-z0-9-]){re.escape(b.domain)}(?![a-z0-9-])", path):
                findings.append(Finding("brand-in-path", "warn", f"the path names {b.domain} but the site is "
                                        f"{registrable}"))
                break
    if follow_redirects:
        findings.extend(_redirect_findings(auth.rest, allow, brands, host_ascii, registrable))
    return report(dest, uni_dest, registrable)


def _redirect_findings(rest: str, allow: AllowList, brands: tuple[str, ...], host: str,
                       outer: str | None) -> list[Finding]:
    """One level of redirect parameters: each target is reported and judged on its own (not followed further).

    A flagged target warns; so does an allow-listed site forwarding off the allow-list (an open redirect lends
    the trusted name to wherever it points)."""
    out: list[Finding] = []
    outer_allowed = allow.allows(host, outer)
    for target in _embedded_targets(rest):
        inner = _check(target, allow, brands, follow_redirects=False)
        if inner.verdict != "ok":
            why = ", ".join(f.code for f in inner.findings if f.severity != "info")
            out.append(Finding("redirect", "warn", f"a parameter forwards to {inner.display()}, which is itself "
                               f"flagged ({inner.verdict}: {why})"))
        elif outer_allowed and not any(f.code == "allow-listed" for f in inner.findings):
            out.append(Finding("redirect", "warn", f"the allow-listed {outer or host} forwards to {inner.display()}, "
                               "which is not on the allow-list"))
        else:
            out.append(Finding("redirect-target", "info", f"a parameter forwards to {inner.display()} (checked: "
                               f"{inner.verdict})"))
    return out
