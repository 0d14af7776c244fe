"""REVQ (issue 20 review), fixed: a quishing attacker's links that once passed `check_url` while misleading.

Moved from tests/attacks/review/ (strict xfails there) once fixed; each asserts the SECURE outcome. Ids as in
the review (REVQ-1, -10, -11, -12).
"""

from __future__ import annotations

import pytest

from sampan.qr.quishing import AllowList, check_url


def test_revq1_eszett_host_is_not_judged_as_the_allow_listed_ss_domain() -> None:
    # A browser opens xn--boini-mqa.com (anyone can register it); the checker must vet that host, not bossini.com.
    report = check_url("https://boßini.com/", allow=AllowList.of(["bossini.com"]), brands=["bossini.com"])
    assert report.verdict == "block"
    assert report.registrable == "xn--boini-mqa.com"
    assert report.full_destination == "https://xn--boini-mqa.com/"
    assert "homoglyph" in {f.code for f in report.findings}


def test_revq1_final_sigma_is_kept_like_a_browser() -> None:
    allow = AllowList.of(["σασ.gr"])  # IDNA 2003 maps final sigma to sigma: it would call σας.gr this domain
    report = check_url("https://σας.gr/", allow=allow)
    assert report.registrable not in allow.domains
    assert "allow-listed" not in {f.code for f in report.findings}


def test_revq1_genuine_deviation_punycode_is_not_malformed() -> None:
    """The converse: `xn--strae-oqa.de` (straße.de) is a valid name browsers open; IDNA 2003 refused it."""
    report = check_url("https://xn--strae-oqa.de/")
    assert report.verdict == "ok" and report.unicode_destination == "https://straße.de/"


def test_revq10_small_capital_lookalike_of_a_four_letter_brand_is_flagged() -> None:
    report = check_url("https://ʜsʙc.com.hk/login")  # reads as HSBC.com.hk
    assert report.verdict == "block"
    assert "homoglyph" in {f.code for f in report.findings}


@pytest.mark.parametrize("slash", ["\u2044", "\u2215", "\u29f8"])
def test_revq11_fake_slash_after_a_brand_domain_blocks(slash: str) -> None:
    report = check_url(f"https://hsbc.com.hk{slash}login.evil.example/")
    assert report.verdict == "block"
    assert "fake-delimiter" in {f.code for f in report.findings}


def test_revq12_protocol_relative_redirect_target_is_judged() -> None:
    allow = AllowList.of(["hsbc.com.hk"], strict=True)
    direct = check_url("https://www.hsbc.com.hk/redirect?url=https://evil.example/", allow=allow)
    assert direct.verdict != "ok"
    for target in ("//evil.example/", "/\\evil.example/", "%2F%2Fevil.example/", "https%253A%252F%252Fevil.example"):
        relative = check_url(f"https://www.hsbc.com.hk/redirect?url={target}", allow=allow)
        assert relative.verdict != "ok", target
        assert any("evil.example" in f.message for f in relative.findings if f.code == "redirect"), target


def test_revq12_an_allow_listed_open_redirect_to_an_unknown_site_warns_even_when_not_strict() -> None:
    report = check_url("https://www.hsbc.com.hk/redirect?url=//evil.example/")
    assert report.verdict == "warn"
