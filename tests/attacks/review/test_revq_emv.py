"""REVQ (issue 20 review): swapped payment codes that `check_payment` passes as "ok".

The attacker makes a valid-CRC EMVCo/FPS payload (anyone can: the CRC is not a signature) that pays the
attacker but satisfies the payee comparison. Each test asserts the SECURE outcome and is a strict xfail until
the finding is fixed (ids in /work/helpers/REVQ_findings.md).
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


@pytest.mark.xfail(strict=True, reason="REVQ-2: a payload with two conflicting names (tag 59 the attacker's, "
                   "tag 64.01 the shop's) is accepted because either name may match")
def test_revq2_conflicting_primary_and_alternate_names_are_flagged() -> None:
    payload = _payload([("26", _fps(("02", ATTACKER_ID)))], "Quick Cash Ltd", ("64", _tlv(("00", "ZH"), ("01", SHOP))))
    report = check_payment(payload, SHOP)
    assert report.verdict != "ok", report.findings


@pytest.mark.xfail(strict=True, reason="REVQ-3: a template carrying two account ids (a repeated sub-tag, or two "
                   "proxy kinds) is not refused; the checker compares one of them and shows only that one")
@pytest.mark.parametrize("subs,hidden", [
    ((("02", ATTACKER_ID), ("02", SHOP_ID)), ATTACKER_ID),           # repeated FPS ID: the checker keeps the last
    ((("02", SHOP_ID), ("03", "+852-66666666")), "+852-66666666"),  # FPS ID and a mobile: the checker keeps 02
])
def test_revq3_template_with_two_account_ids_is_refused(subs: tuple[tuple[str, str], ...], hidden: str) -> None:
    payload = _payload([("26", _fps(*subs))], SHOP)
    report = check_payment(payload, ExpectedMerchant(SHOP, proxy=SHOP_ID))
    assert report.verdict == "block", report.findings
    assert hidden in report.payee  # at the very least the payer must be shown the other account


@pytest.mark.xfail(strict=True, reason="REVQ-4: with two FPS templates (attacker's first, shop's second) the "
                   "expected proxy matches 'any' account and the verdict is ok")
def test_revq4_second_fps_account_with_another_proxy_is_flagged() -> None:
    payload = _payload([("26", _fps(("02", ATTACKER_ID))), ("27", _fps(("02", SHOP_ID)))], SHOP)
    report = check_payment(payload, ExpectedMerchant(SHOP, proxy=SHOP_ID))
    assert report.verdict != "ok", report.findings


@pytest.mark.xfail(strict=True, reason="REVQ-5: with only the shop's name expected, a swapped code that copies the "
                   "name and pays another account is 'ok' (nothing says the account was not checked)")
def test_revq5_name_only_expectation_does_not_give_ok_for_an_unchecked_account() -> None:
    payload = _payload([("26", _fps(("02", ATTACKER_ID)))], SHOP)
    report = check_payment(payload, SHOP)
    assert report.verdict != "ok", report.findings
