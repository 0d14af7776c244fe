"""Quishing checks of URLs from QR codes: the tricks one by one, then precision/recall on the hand-built corpus."""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest

from sampan.errors import ConfigError
from sampan.qr import quishing
from sampan.qr.confusables import is_whole_script_confusable, mixed_script, skeleton
from sampan.qr.quishing import (
    AllowList,
    QuishingConfigError,
    check_url,
    damerau_levenshtein,
    hong_kong_allow_list,
    registrable_domain,
)

from .url_corpus import BENIGN, MALICIOUS, URL_CORPUS, UrlCase


def codes(url: str, **kw: object) -> set[str]:
    return {f.code for f in check_url(url, **kw).findings}  # type: ignore[arg-type]


# ---- corpus shape -------------------------------------------------------------------------------------------------

def test_corpus_is_large_labelled_and_unique() -> None:
    assert len(URL_CORPUS) >= 120
    assert len(BENIGN) >= 50 and len(MALICIOUS) >= 70
    assert all(c.label in ("benign", "malicious") and c.reason for c in URL_CORPUS)
    assert len({c.url for c in URL_CORPUS}) == len(URL_CORPUS)


def _confusion(cases: list[UrlCase], allow: AllowList) -> tuple[Counter[str], list[UrlCase]]:
    counts: Counter[str] = Counter()
    wrong = []
    for case in cases:
        flagged = check_url(case.url, allow=allow).verdict != "ok"
        bad = case.label == "malicious"
        counts["tp" if flagged and bad else "fp" if flagged else "fn" if bad else "tn"] += 1
        if flagged != bad:
            wrong.append(case)
    return counts, wrong


def _print_matrix(title: str, m: Counter[str]) -> tuple[float, float]:
    precision = m["tp"] / max(1, m["tp"] + m["fp"])
    recall = m["tp"] / max(1, m["tp"] + m["fn"])
    print(f"\n{title}: {len(URL_CORPUS)} URLs")
    print("                 flagged   ok")
    print(f"  malicious      {m['tp']:7d} {m['fn']:4d}")
    print(f"  benign         {m['fp']:7d} {m['tn']:4d}")
    print(f"  precision {precision:.3f}  recall {recall:.3f}")
    return precision, recall


def test_precision_and_recall_on_the_corpus() -> None:
    """The default (non-strict) allow-list: "flagged" means verdict warn or block."""
    matrix, wrong = _confusion(URL_CORPUS, hong_kong_allow_list())
    precision, recall = _print_matrix("check_url, Hong Kong allow-list (non-strict)", matrix)
    for case in wrong:
        print(f"  wrong: {case.label:9s} {case.url}  ({case.reason})")
    assert precision >= 0.95 and recall >= 0.95
    # The only mistakes are the cases written down as hard (real brand sites not allow-listed, brand-free phish).
    assert all(case.reason.startswith("HARD") for case in wrong), wrong


def test_strict_allow_list_trades_precision_for_recall() -> None:
    """Strict mode warns on anything not allow-listed: it catches brand-free phishing, at a cost in precision."""
    matrix, _ = _confusion(URL_CORPUS, hong_kong_allow_list(strict=True))
    precision, recall = _print_matrix("check_url, Hong Kong allow-list (strict)", matrix)
    assert recall == 1.0
    assert precision < 1.0


def test_every_malicious_case_names_a_reason_and_blocks_or_warns() -> None:
    for case in MALICIOUS:
        report = check_url(case.url)
        if report.verdict != "ok":
            assert any(f.severity in ("warn", "block") and f.message for f in report.findings), case


# ---- full destination ----------------------------------------------------------------------------------------------

def test_full_destination_shows_punycode_and_unicode() -> None:
    report = check_url("https://һѕbс.com.hk/login?x=1")
    assert report.full_destination == "https://xn--b-7tb2d3v.com.hk/login?x=1"
    assert report.unicode_destination == "https://һѕbс.com.hk/login?x=1"
    assert "xn--b-7tb2d3v.com.hk" in report.display() and "һѕbс.com.hk" in report.display()
    assert report.verdict == "block"
    assert {"idn", "mixed-script", "homoglyph"} <= {f.code for f in report.findings}


def test_punycode_input_is_decoded_for_display() -> None:
    report = check_url("https://xn--hngseng-2fg.com/")
    assert report.unicode_destination == "https://hаngseng.com/"
    assert "homoglyph" in {f.code for f in report.findings}


def test_userinfo_trick_shows_the_real_host() -> None:
    report = check_url("https://www.hsbc.com.hk@evil.example/pay")
    assert report.full_destination == "https://evil.example/pay"
    assert report.registrable == "evil.example"
    userinfo = next(f for f in report.findings if f.code == "userinfo")
    assert userinfo.severity == "block" and "evil.example" in userinfo.message


def test_backslash_is_a_slash_as_in_browsers() -> None:
    report = check_url("https://evil.example\\@www.hsbc.com.hk/")
    assert report.registrable == "evil.example"
    assert report.verdict != "ok"


def test_normalisation_case_trailing_dot_fullwidth() -> None:
    for text in ("HTTPS://WWW.HSBC.COM.HK/", "https://www.hsbc.com.hk./", "https://ｗｗｗ。ｈｓｂｃ。ｃｏｍ。ｈｋ/"):
        report = check_url(text)
        assert report.full_destination == "https://www.hsbc.com.hk/", text
        assert report.verdict == "ok", text


# ---- individual checks ---------------------------------------------------------------------------------------------

def test_https_only_even_for_allow_listed_hosts() -> None:
    report = check_url("http://www.hsbc.com.hk/")
    assert report.verdict == "block" and "not-https" in {f.code for f in report.findings}
    assert check_url("ftp://www.hsbc.com.hk/").verdict == "block"
    assert check_url("javascript:alert(1)").verdict == "block"
    assert "no-scheme" in codes("www.hsbc.com.hk")


@pytest.mark.parametrize("host", ["203.0.113.7", "3405803783", "0xcb.0x0.0x71.0x7", "0313.0.0161.07", "0xcb007107",
                                  "203.0.28935", "203.113.7"])
def test_ipv4_in_every_form(host: str) -> None:
    report = check_url(f"https://{host}/login")
    hit = next(f for f in report.findings if f.code == "ip-host")
    assert report.verdict == "block"
    expected = "203.113.0.7" if host == "203.113.7" else "203.0.113.7"
    assert expected in hit.message and report.full_destination == f"https://{expected}/login"


def test_ipv6_and_bad_ipv4() -> None:
    assert "ip-host" in codes("https://[2001:db8::1]:8443/")
    assert "malformed" in codes("https://256.1.1.1/")
    assert "malformed" in codes("https://1.2.3.4.5/")


def test_ports() -> None:
    assert "port" not in codes("https://www.sc.com:443/hk")
    report = check_url("https://www.sc.com:8443/hk")
    assert report.verdict == "warn" and report.full_destination == "https://www.sc.com:8443/hk"
    assert "malformed" in codes("https://www.sc.com:99999/")


def test_shorteners_warn() -> None:
    assert check_url("https://bit.ly/abc").verdict == "warn"
    assert "shortener" in codes("https://tinyurl.com/x")


@pytest.mark.parametrize("url,code", [
    ("https://www.hbsc.com.hk/", "typosquat"),
    ("https://www.hangsegn.com/", "typosquat"),
    ("https://www.hsbc-login.com/", "brand-in-domain"),
    ("https://www.hsbc.com.hk.evil.example/", "brand-subdomain"),
    ("https://gov-hk.top/", "brand-folded"),
    ("https://www.hsbc.net/", "brand-other-suffix"),
    ("https://www.b0chk.com/", "homoglyph"),
    ("https://evil.example/www.hsbc.com.hk/", "brand-in-path"),
])
def test_brand_lookalikes(url: str, code: str) -> None:
    assert code in codes(url)


def test_allow_listed_hosts_skip_brand_checks_but_not_syntax_checks() -> None:
    assert check_url("https://its.bochk.com/").verdict == "ok"
    assert check_url("https://www.ird.gov.hk/").verdict == "ok"
    assert check_url("https://www.bochk.com:8080@203.0.113.1/").verdict == "block"


def test_custom_allow_list_and_brands() -> None:
    allow = AllowList.of(["https://www.Example-Bank.com/hk"], strict=True)
    assert allow.domains == frozenset({"example-bank.com"})
    brands = ["example-bank.com"]
    assert check_url("https://online.example-bank.com/", allow=allow, brands=brands).verdict == "ok"
    assert "homoglyph" in codes("https://examp1e-bank.com/", allow=allow, brands=brands)
    assert "typosquat" in codes("https://exampel-bank.com/", allow=allow, brands=brands)
    assert check_url("https://www.wikipedia.org/", allow=allow, brands=brands).verdict == "warn"  # strict


def test_bad_allow_list_or_brand_entry_is_a_config_error_naming_it() -> None:
    with pytest.raises(QuishingConfigError, match="allow-list entry 'bad..entry'") as info:
        AllowList.of(["bad..entry"])
    assert isinstance(info.value, ConfigError)
    with pytest.raises(QuishingConfigError, match="brand 'https://a b/'"):
        check_url("https://www.hsbc.com.hk/", brands=["https://a b/"])


def test_invisible_and_bidi_characters_block() -> None:
    assert "invisible" in codes("https://hs\u200bbc.com.hk/")
    report = check_url("https://www.hsbc.com.hk/\u202ekpa.evil.example")
    assert report.verdict == "block" and "U+202E" in report.findings[0].message


def test_redirect_parameter_is_checked() -> None:
    assert "redirect" in codes("https://www.hsbc.com.hk/r?to=https%3A%2F%2F203.0.113.7%2F")
    assert "redirect" not in codes("https://www.hsbc.com.hk/r?to=https://www.hsbc.com.hk/a")


def test_registrable_domain_uses_the_bundled_list_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the public-suffix list must not touch the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    quishing._psl.cache_clear()  # load the list again, now with the network cut
    assert registrable_domain("a.b.hsbc.com.hk") == "hsbc.com.hk"
    assert registrable_domain("www.ird.gov.hk") == "ird.gov.hk"
    assert registrable_domain("com.hk") is None
    assert check_url("https://hsbc.com.hk.evil.example/").registrable == "evil.example"


# ---- helpers -------------------------------------------------------------------------------------------------------

def test_damerau_levenshtein() -> None:
    assert damerau_levenshtein("hsbc", "hsbc") == 0
    assert damerau_levenshtein("hsbc", "hbsc") == 1  # transposition counts once
    assert damerau_levenshtein("kitten", "sitting") == 3
    assert damerau_levenshtein("", "abc") == 3
    assert damerau_levenshtein("ca", "abc") == 3  # optimal-string-alignment form


def test_skeleton_and_scripts() -> None:
    assert skeleton("һѕbс") == skeleton("hsbc") == "hsbc"
    assert skeleton("ｈａｎｇｓｅｎｇ") == "hangseng"
    assert skeleton("rnybank") == skeleton("mybank")
    assert skeleton("hsbç") == "hsbc"
    assert mixed_script("hangsеng") and not mixed_script("hangseng")
    assert not mixed_script("香港hk") and not mixed_script("例子")
    assert is_whole_script_confusable("аррӏе") and not is_whole_script_confusable("例子")


NASTY = ["", " ", "https://", "https:///", "https://[", "https://[::1", "https://[zz]/", "https://a..b/",
         "https://xn--zz-/", "https://-.com/", "https://%ff%fe/", "https://a b.com/", "https://\x00.com/",
         "http://@", "https://:443", "https://.", "::::", "https://" + "a" * 70 + ".com/", "https://例子.香港:/"]


def test_junk_never_raises() -> None:
    """Anything a QR code can hold gets a report, never an exception (fixed seed: reproducible junk)."""
    rng = random.Random(20)
    alphabet = "ab.:/@%[]\\x-0123456789һѕ。ｈ\t?#=&"
    junk = NASTY + ["https://" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
                    for _ in range(300)]
    for text in junk:
        report = check_url(text)
        assert report.verdict in ("ok", "warn", "block")
        if report.verdict == "ok":
            assert report.registrable is not None, text


# ---- issue 20 review fixes (REVQ-1, -10, -11, -12) -----------------------------------------------------------------

def test_hosts_are_read_with_uts46_non_transitional_idna_like_browsers() -> None:
    from sampan.qr._hosts import HostError, to_idna

    assert to_idna("boßini.com") == ("xn--boini-mqa.com", "boßini.com", True)
    assert to_idna("xn--strae-oqa.de") == ("xn--strae-oqa.de", "straße.de", True)
    assert to_idna("ＨＳＢＣ.com")[0] == "hsbc.com" and to_idna("r3---sn-abc.example")[0] == "r3---sn-abc.example"
    for bad in ("xn--a-ecp.com",          # decodes to 'a⒈', a character UTS #46 maps away: not canonical
                "xn--zz.com",             # not punycode at all
                "\u0301abc.com"):         # a label starting with a combining mark
        with pytest.raises(HostError):
            to_idna(bad)


def test_without_the_idna_package_deviation_characters_are_refused() -> None:
    from sampan.qr._hosts import HostError, _to_idna_2003

    assert _to_idna_2003("hsbc.com.hk")[0] == "hsbc.com.hk"
    for host in ("boßini.com", "σας.gr", "a\u200db.com"):
        with pytest.raises(HostError, match="two different domains"):
            _to_idna_2003(host)


def test_small_capitals_have_latin_skeletons() -> None:
    assert skeleton("ʜsʙc") == "hsbc" and skeleton("ʜᴀɴɢsᴇɴɢ") == "hangseng"
    assert not mixed_script("ʜsʙc")  # all Latin: only the skeleton can catch it


@pytest.mark.parametrize("char", ["\u2044", "\u2215", "\u29f8", "\u2236", "\ua789"])
def test_delimiter_look_alikes_in_the_host_block(char: str) -> None:
    report = check_url(f"https://www.sc.com{char}hk.evil.example/")
    assert report.verdict == "block" and "fake-delimiter" in {f.code for f in report.findings}


def test_every_redirect_target_is_reported() -> None:
    report = check_url("https://www.google.com/url?q=https://www.wikipedia.org/")
    assert report.verdict == "ok"
    assert [f.code for f in report.findings if f.code.startswith("redirect")] == ["redirect-target"]
    same_site = check_url("https://www.hsbc.com.hk/redirect?url=https://www.hsbc.com.hk/personal")
    assert same_site.verdict == "ok"
    off_list = check_url("https://www.hsbc.com.hk/redirect?url=https://www.wikipedia.org/")
    assert off_list.verdict == "warn" and "forwards to https://www.wikipedia.org/" in off_list.findings[-1].message
