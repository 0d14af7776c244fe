"""EMVCo merchant-presented payloads (FPS): TLV and CRC, the payee shown, and swapped-code detection."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from sampan.errors import DataError, ProtocolError
from sampan.qr.emv import (
    EmvCrcError,
    EmvFormatError,
    ExpectedMerchant,
    check_payment,
    crc16_ccitt,
    encode_emv,
    parse_emv,
)

from .url_corpus import PAYMENT_CORPUS

# The sample payload of the EMVCo MPM specification (two account templates, Chinese alternate-language data).
EMVCO_SAMPLE = ("00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN"
                "5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***"
                "0708A60086670902ME91320016A0112233449988770708123456786304A13A")


def fps(name: str = "Wing Kee Noodle", sub: str = "02071234567", **extra: str) -> str:
    fields = [("00", "01"), ("01", "12" if "54" in extra else "11"), ("26", "0012hk.com.hkicl0103004" + sub),
              ("52", "5812"), ("53", "344"), *extra.items(), ("58", "HK"), ("59", name), ("60", "Hong Kong")]
    return encode_emv(fields)


def test_crc16_ccitt_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def test_emvco_sample_parses_with_its_published_crc() -> None:
    payment = parse_emv(EMVCO_SAMPLE)
    assert payment.crc == "A13A" and payment.crc_ok
    assert payment.merchant_name == "BEST TRANSPORT" and payment.city == "BEIJING"
    assert payment.amount == Decimal("23.72") and payment.currency_code == "CNY"
    assert [a.tag for a in payment.accounts] == ["29", "31"]
    assert payment.initiation == "dynamic" and payment.country == "CN" and payment.mcc == "4111"


@pytest.mark.parametrize("sub,kind,value", [("02071234567", "FPS ID", "1234567"),
                                            ("0313+852-91234567", "mobile", "+852-91234567"),
                                            ("0415SHOP@EXAMPLE.HK", "e-mail", "SHOP@EXAMPLE.HK")])
def test_fps_proxies(sub: str, kind: str, value: str) -> None:
    payment = parse_emv(fps(sub=sub, **{"54": "12.50"}))
    account = payment.accounts[0]
    assert account.is_fps and account.proxy == (kind, value) and account.fields["01"] == "004"
    assert payment.amount == Decimal("12.50") and payment.currency_code == "HKD"
    shown = payment.payee()
    assert "Wing Kee Noodle" in shown and value in shown and "bank 004" in shown and "12.50 HKD" in shown


def test_bad_crc_raises_a_protocol_error_naming_tag_63() -> None:
    tampered = fps().replace("Hong Kong", "Hong Kang")
    with pytest.raises(EmvCrcError, match="tag 63") as info:
        parse_emv(tampered)
    assert isinstance(info.value, ProtocolError)
    assert parse_emv(tampered, verify_crc=False).crc_ok is False


@pytest.mark.parametrize("payload,match", [
    (fps()[:30], "tag 26"),
    ("0002020102116304ABCD", "tag 00"),
    (encode_emv([("00", "01"), ("26", "0012hk.com.hkicl"), ("26", "0012hk.com.hkicl")]), "tag 26 appears twice"),
    (encode_emv([("00", "01"), ("59", "Shop")]), "tags 26-51"),
    (fps(**{"54": "12,50"}), "tag 54"),
    (fps(**{"53": "HKD"}), "tag 53"),
    ("000201" + "2616" + "0012hk.com.hkicl", "tag 63"),
    ("00020126", "offset 6"),
    (encode_emv([("00", "01"), ("26", "0012hk.com.hkicl"), ("62", "0599ab")]), "tag 62"),
])
def test_malformed_payloads_raise_data_errors_naming_the_tag(payload: str, match: str) -> None:
    with pytest.raises(EmvFormatError, match=match) as info:
        parse_emv(payload)
    assert isinstance(info.value, DataError)


def test_payment_corpus_all_right() -> None:
    tp = fp = fn = tn = 0
    for case in PAYMENT_CORPUS:
        report = check_payment(case.payload, case.expected)
        flagged = report.verdict != "ok"
        bad = case.label == "malicious"
        tp, fp, fn, tn = tp + (flagged and bad), fp + (flagged and not bad), fn + (bad and not flagged), \
            tn + (not bad and not flagged)
        assert flagged == bad, (case.reason, report.findings)
        assert report.payee
    print(f"\ncheck_payment on {len(PAYMENT_CORPUS)} payloads: tp {tp} fp {fp} fn {fn} tn {tn}")


def test_swapped_code_with_a_valid_crc_is_still_caught() -> None:
    """The attacker recomputes the CRC: only the payee comparison can catch the swap, and it does."""
    swapped = fps(name="Wing Kee Noodle", sub="02079999999")
    assert parse_emv(swapped).crc_ok
    report = check_payment(swapped, ExpectedMerchant("Wing Kee Noodle", proxy="1234567"))
    assert report.verdict == "block"
    assert "9999999" in report.payee
    assert any(f.code == "account-mismatch" and "9999999" in f.message for f in report.findings)
    renamed = check_payment(fps(name="Lucky Cash"), "Wing Kee Noodle")
    assert renamed.verdict == "block" and "Lucky Cash" in renamed.payee


def test_alternate_language_name_is_shown_and_both_names_are_compared() -> None:
    payload = encode_emv([("00", "01"), ("01", "11"), ("26", "0012hk.com.hkicl02071234567"), ("53", "344"),
                          ("58", "HK"), ("59", "Wing Kee Noodle"), ("60", "Hong Kong"), ("64", "0002ZH0104榮記粉麵")])
    both = ExpectedMerchant("Wing Kee Noodle", proxy="1234567", alternate_name="榮記粉麵")
    report = check_payment(payload, both)
    assert report.verdict == "ok" and "Wing Kee Noodle / 榮記粉麵" in report.payee
    # The English name alone: the Chinese name cannot be compared (another script), so the payer is told to look.
    english = check_payment(payload, ExpectedMerchant("Wing Kee Noodle", proxy="1234567"))
    assert english.verdict == "warn" and {f.code for f in english.findings} >= {"alternate-unchecked"}
    # The Chinese name alone matches only tag 64 while tag 59 (what most wallets show) names someone else as far
    # as the checker can tell: blocked (the price of REVQ-2's fix; the message says how to give both names).
    chinese = check_payment(payload, ExpectedMerchant("榮記粉麵", proxy="1234567"))
    assert chinese.verdict == "block" and "alternate_name" in chinese.findings[-1].message
    assert check_payment(payload, ExpectedMerchant("幸運甜品", proxy="1234567")).verdict == "block"
    assert check_payment(payload, "Wing Kee Noodle").verdict == "warn"  # name only: account not confirmed


def test_every_account_id_is_shown_and_checked() -> None:
    fps_ids = "0012hk.com.hkicl" + "0103004" + "02071234567" + "0313+852-66666666"
    payload = encode_emv([("00", "01"), ("01", "11"), ("26", fps_ids), ("53", "344"), ("58", "HK"),
                          ("59", "Wing Kee Noodle"), ("60", "Hong Kong")])
    payment = parse_emv(payload)
    assert [(k, v) for _, k, v in payment.account_ids()] == [("FPS ID", "1234567"), ("mobile", "+852-66666666")]
    assert "FPS ID 1234567 and mobile +852-66666666 (bank 004)" in payment.payee()
    mine = ExpectedMerchant("Wing Kee Noodle", proxy="1234567", other_accounts=("+852 6666 6666",))
    assert check_payment(payload, mine).verdict == "ok"  # both ids are the shop's
    report = check_payment(payload, ExpectedMerchant("Wing Kee Noodle", proxy="1234567"))
    assert report.verdict == "block" and "+852-66666666" in report.findings[0].message


@pytest.mark.parametrize("tag,value,dup", [("62", "0503abc0503xyz", "62.05"),
                                           ("64", "0002ZH0104榮記粉麵0104幸運甜品", "64.01")])
def test_repeated_sub_tags_in_additional_or_language_data_block(tag: str, value: str, dup: str) -> None:
    payload = encode_emv([("00", "01"), ("01", "11"), ("26", "0012hk.com.hkicl02071234567"), ("53", "344"),
                          ("58", "HK"), ("59", "Wing Kee Noodle"), ("60", "Hong Kong"), (tag, value)])
    assert parse_emv(payload).duplicate_subtags == (dup,)
    report = check_payment(payload, ExpectedMerchant("Wing Kee Noodle", proxy="1234567"))
    assert report.verdict == "block" and "duplicate-subtag" in {f.code for f in report.findings}


def test_homoglyph_payee_name_is_blocked() -> None:
    report = check_payment(fps(name="Wіng Kee Noodle"), "Wing Kee Noodle")  # Cyrillic i
    assert report.verdict == "block" and {f.code for f in report.findings} == {"payee-homoglyph"}


def test_check_payment_never_raises_on_junk() -> None:
    rng = random.Random(53)  # fixed seed: reproducible junk
    good = fps()
    junk = ["", "hello", "https://pay.example/", good[:-1], good + "00", "0002" * 10]
    junk += ["".join(rng.choice("0123456789AB") for _ in range(rng.randint(0, 60))) for _ in range(200)]
    junk += [good[:i] + good[i + 1:] for i in range(0, len(good), 3)]
    for text in junk:
        report = check_payment(text, "Wing Kee Noodle")
        assert report.verdict in ("ok", "warn", "block")
        if text != good:
            assert report.verdict == "block", text
