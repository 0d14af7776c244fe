"""REVQ (issue 20 review): a quishing attacker's links that `check_url` passes while they mislead.

Each test asserts the SECURE outcome and is a strict xfail until the finding is fixed (see
/work/helpers/REVQ_findings.md for the ids).
"""

from __future__ import annotations

import pytest

from sampan.qr.quishing import AllowList, check_url


@pytest.mark.xfail(strict=True, reason="REVQ-1: IDNA 2003 maps the deviation character ß to 'ss', browsers "
                   "(UTS #46 non-transitional, WHATWG URL) keep it: the checker vets a different host")
def test_revq1_eszett_host_is_not_judged_as_the_allow_listed_ss_domain() -> None:
    # A browser opens xn--boini-mqa.com (anyone can register it); the checker says "bossini.com, allow-listed".
    report = check_url("https://boßini.com/", allow=AllowList.of(["bossini.com"]), brands=["bossini.com"])
    assert report.verdict != "ok"
    assert report.registrable != "bossini.com"


@pytest.mark.xfail(strict=True, reason="REVQ-10: Latin small capitals (U+029C, U+0299) are not in the skeleton "
                   "table and a 4-letter brand gets edit budget 1: 'ʜsʙc' passes as ok")
def test_revq10_small_capital_lookalike_of_a_four_letter_brand_is_flagged() -> None:
    report = check_url("https://ʜsʙc.com.hk/login")  # reads as HSBC.com.hk
    assert report.verdict != "ok"


@pytest.mark.xfail(strict=True, reason="REVQ-11: slash look-alikes (U+2044, U+2215, U+29F8) inside the host make "
                   "'hsbc.com.hk/...' the visible part of an attacker's host; only a warning")
@pytest.mark.parametrize("slash", ["\u2044", "\u2215", "\u29f8"])
def test_revq11_fake_slash_after_a_brand_domain_blocks(slash: str) -> None:
    report = check_url(f"https://hsbc.com.hk{slash}login.evil.example/")
    assert report.verdict == "block"


@pytest.mark.xfail(strict=True, reason="REVQ-12: a protocol-relative redirect target ('//host') is not followed, so "
                   "an allow-listed open redirect passes even on a strict allow-list")
def test_revq12_protocol_relative_redirect_target_is_judged() -> None:
    allow = AllowList.of(["hsbc.com.hk"], strict=True)
    direct = check_url("https://www.hsbc.com.hk/redirect?url=https://evil.example/", allow=allow)
    assert direct.verdict != "ok"  # holds today: the scheme-ful target is judged (not on the strict allow-list)
    relative = check_url("https://www.hsbc.com.hk/redirect?url=//evil.example/", allow=allow)
    assert relative.verdict != "ok"
