"""REVQ (issue 20 review), fixed: swapped payment codes that once passed `check_payment` as "ok".

The attacker makes a valid-CRC EMVCo/FPS payload (anyone can: the CRC is not a signature) that pays the
attacker but satisfies the payee comparison. Moved from tests/attacks/review/ once fixed; ids as in the review.
"""

from __future__ import annotations

import pytest

from sampan.qr.emv import ExpectedMerchant, check_payment, encode_emv

SHOP = "Wing Kee Noodle"
SHOP_ID = "1234567"
ATTACKER_ID = "9999999"


def _tlv(*pairs: tuple[str, str]) -> str:
    return "".join(f"{tag}{len(value):02d}{value}" for tag, value in pairs)


def _fps(*subs: tuple[str, str]) -> str:
    return _tlv(("00", "hk.com.hkicl"), ("01", "004"), *subs)


def _payload(accounts: list[tuple[str, str]], name: str, *extra: tuple[str, str]) -> str:
    return encode_emv([("00", "01"), ("01", "11"), *accounts, ("52", "5812"), ("53", "344"), ("58", "HK"),
                       ("59", name), ("60", "Hong Kong"), *extra])


@pytest.mark.parametrize("expected", [SHOP, ExpectedMerchant(SHOP, proxy=ATTACKER_ID)])
def test_revq2_conflicting_primary_and_alternate_names_are_flagged(expected: str | ExpectedMerchant) -> None:
    payload = _payload([("26", _fps(("02", ATTACKER_ID)))], "Quick Cash Ltd", ("64", _tlv(("00", "ZH"), ("01", SHOP))))
    report = check_payment(payload, expected)
    assert report.verdict == "block", report.findings
    assert "payee-names-disagree" in {f.code for f in report.findings}
    assert "Quick Cash Ltd" in report.payee and SHOP in report.payee  # both names shown


def test_revq2_an_alternate_name_that_differs_in_the_same_script_blocks() -> None:
    payload = _payload([("26", _fps(("02", SHOP_ID)))], SHOP, ("64", _tlv(("00", "EN"), ("01", "Quick Cash Ltd"))))
    report = check_payment(payload, ExpectedMerchant(SHOP, proxy=SHOP_ID))
    assert report.verdict == "block", report.findings


@pytest.mark.parametrize("subs,hidden", [
    ((("02", ATTACKER_ID), ("02", SHOP_ID)), ATTACKER_ID),           # repeated FPS ID
    ((("02", SHOP_ID), ("03", "+852-66666666")), "+852-66666666"),  # FPS ID and a mobile
])
def test_revq3_template_with_two_account_ids_is_refused(subs: tuple[tuple[str, str], ...], hidden: str) -> None:
    payload = _payload([("26", _fps(*subs))], SHOP)
    report = check_payment(payload, ExpectedMerchant(SHOP, proxy=SHOP_ID))
    assert report.verdict == "block", report.findings
    assert hidden in report.payee and SHOP_ID in report.payee  # the payer is shown every account
    name_only = check_payment(payload, SHOP)
    assert name_only.verdict == "block", name_only.findings  # ambiguous even without an expected account


def test_revq4_second_fps_account_with_another_proxy_is_flagged() -> None:
    payload = _payload([("26", _fps(("02", ATTACKER_ID))), ("27", _fps(("02", SHOP_ID)))], SHOP)
    report = check_payment(payload, ExpectedMerchant(SHOP, proxy=SHOP_ID))
    assert report.verdict == "block", report.findings
    assert any(f.code == "account-mismatch" and ATTACKER_ID in f.message for f in report.findings)
    assert check_payment(payload, SHOP).verdict == "block"  # two FPS payees, name only: ambiguous


def test_revq5_name_only_expectation_does_not_give_ok_for_an_unchecked_account() -> None:
    payload = _payload([("26", _fps(("02", ATTACKER_ID)))], SHOP)
    report = check_payment(payload, SHOP)
    assert report.verdict == "warn", report.findings
    unchecked = [f for f in report.findings if f.code == "account-unchecked"]
    assert unchecked and ATTACKER_ID in unchecked[0].message and "not confirmed" in unchecked[0].message
