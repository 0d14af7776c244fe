"""EMVCo merchant-presented QR payloads (Hong Kong FPS among them): parse, check the CRC, show the payee.

Payment quishing swaps a shop's QR sticker for one that pays someone else; the payer's app shows a name the
payer rarely compares. `check_payment` parses the EMVCo MPM payload (ID-length-value, two decimal digits each),
verifies the CRC16-CCITT (poly 0x1021, init 0xFFFF) of tag 63, shows the payee (name 59, city 60, the
alternate-language name in 64, the merchant account templates 26-51 with the FPS proxy inside: GUID
`hk.com.hkicl`, 01 bank code, 02 FPS ID, 03 mobile, 04 e-mail), amount (54) and currency (53), and compares it
with the merchant the payer expects.

A valid CRC only means the payload was not damaged or edited by hand without recomputing it: anyone can make a
payload with a correct CRC, so the payee comparison is the check that matters against a swapped code.

A wallet may pay any account id in the code (which template or sub-tag it uses is the wallet's choice), so
every id is shown and, when the payer gives the shop's account (`ExpectedMerchant.proxy`), every id must be the
shop's; a repeated sub-tag blocks. Both names (59, shown by most wallets, and 64.01) must name the shop. A
name-only expectation gives at most "warn": the name is text the attacker chooses.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from sampan.errors import DataError, ProtocolError
from sampan.qr.confusables import scripts_in, skeleton
from sampan.qr.quishing import Finding, Verdict, verdict_of

__all__ = [
    "EmvFormatError", "EmvCrcError", "MerchantAccount", "EmvPayment", "ExpectedMerchant", "PaymentReport",
    "crc16_ccitt", "parse_tlv", "encode_emv", "parse_emv", "check_payment", "FPS_GUID", "CURRENCIES",
]

FPS_GUID = "hk.com.hkicl"
CURRENCIES = {"344": "HKD", "156": "CNY", "446": "MOP", "840": "USD", "978": "EUR", "826": "GBP", "392": "JPY",
              "702": "SGD", "764": "THB", "458": "MYR", "608": "PHP", "360": "IDR", "356": "INR", "901": "TWD"}
_FPS_PROXY = {"02": "FPS ID", "03": "mobile", "04": "e-mail"}
_AMOUNT = re.compile(r"^\d{1,10}(\.\d{0,3})?$")


class EmvFormatError(DataError):
    """A payment payload that is not a well-formed EMVCo MPM payload; names the tag at fault."""


class EmvCrcError(ProtocolError):
    """A payment payload whose CRC (tag 63) does not match its content."""


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection), the checksum EMVCo MPM puts in tag 63."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def parse_tlv(text: str, where: str = "payload") -> list[tuple[str, str]]:
    """Split EMVCo ID-length-value data into (id, value) pairs; raises EmvFormatError naming the offset."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        head = text[i:i + 4]
        if len(head) < 4 or not head.isascii() or not head.isdigit():
            raise EmvFormatError(f"{where}: bad ID/length {head!r} at offset {i}")
        tag, length = head[:2], int(head[2:])
        value = text[i + 4:i + 4 + length]
        if len(value) != length:
            raise EmvFormatError(f"{where}: tag {tag} says {length} characters but only {len(value)} remain")
        out.append((tag, value))
        i += 4 + length
    return out


def encode_emv(fields: list[tuple[str, str]]) -> str:
    """An EMVCo payload from (id, value) pairs, with tag 63 (CRC) appended; for tests and issuers."""
    body = "".join(f"{tag}{len(value):02d}{value}" for tag, value in fields) + "6304"
    return body + f"{crc16_ccitt(body.encode('utf-8')):04X}"


@dataclass(frozen=True)
class MerchantAccount:
    """One merchant account information template (tags 26-51); `fields` holds its sub-tags."""

    tag: str
    guid: str | None
    fields: dict[str, str]
    pairs: tuple[tuple[str, str], ...] = ()  # every sub-tag in order, repeats kept (`fields` keeps the last)

    @property
    def account_ids(self) -> tuple[tuple[str, str], ...]:
        """Every (kind, value) account id in the template, repeats included: a wallet may pay any of them."""
        if not self.is_fps:  # other schemes: the first sub-tag after the GUID, as `proxy`
            return (self.proxy,) if self.proxy else ()
        pairs = self.pairs or tuple(self.fields.items())
        return tuple((_FPS_PROXY[k], v) for k, v in pairs if k in _FPS_PROXY)

    @property
    def duplicate_subtags(self) -> tuple[str, ...]:
        """Sub-tags that appear more than once (`26.02`): ambiguous, wallets differ on which one they use."""
        seen = [k for k, _ in self.pairs]
        return tuple(f"{self.tag}.{k}" for k in dict.fromkeys(seen) if seen.count(k) > 1)

    @property
    def is_fps(self) -> bool:
        """True for Hong Kong's Faster Payment System template."""
        return (self.guid or "").lower() == FPS_GUID

    @property
    def proxy(self) -> tuple[str, str] | None:
        """(kind, value) of the account or proxy id: FPS ID, mobile or e-mail for FPS; else the first sub-tag."""
        if self.is_fps:
            for sub, kind in _FPS_PROXY.items():
                if sub in self.fields:
                    return kind, self.fields[sub]
            return None
        others = [(k, v) for k, v in sorted(self.fields.items()) if k != "00"]
        return (f"account {self.tag}.{others[0][0]}", others[0][1]) if others else None

    def describe(self) -> str:
        """`FPS ID 1234567 (bank 004)`-style text; every account id of the template is shown."""
        ids = self.account_ids
        text = " and ".join(f"{kind} {value}" for kind, value in ids) if ids else \
            f"template {self.tag} without an account id"
        if self.is_fps and "01" in self.fields:
            text += f" (bank {self.fields['01']})"
        elif not self.is_fps and self.guid:
            text += f" via {self.guid}"
        return text


@dataclass(frozen=True)
class EmvPayment:
    """A parsed EMVCo MPM payload. `crc_ok` is False only when parsed with `verify_crc=False`."""

    merchant_name: str
    city: str | None
    accounts: tuple[MerchantAccount, ...]
    amount: Decimal | None
    currency: str | None  # ISO 4217 numeric as in tag 53
    country: str | None
    mcc: str | None
    initiation: Literal["static", "dynamic"] | None
    additional: dict[str, str]
    crc: str
    crc_ok: bool
    fields: dict[str, str]
    alternate_name: str | None = None  # tag 64 sub-tag 01: the name in the merchant's own language
    duplicate_subtags: tuple[str, ...] = ()  # `26.02`, `64.01`: sub-tags given twice (ambiguous, see check_payment)

    def account_ids(self) -> list[tuple[str, str, str]]:
        """(template tag, kind, value) for every account id in every template: all the payees a wallet may pay."""
        return [(a.tag, kind, value) for a in self.accounts for kind, value in a.account_ids]

    @property
    def currency_code(self) -> str | None:
        """ISO 4217 letters for the numeric currency (None when absent or not in the table)."""
        return CURRENCIES.get(self.currency or "")

    def payee(self) -> str:
        """What the payer should read before paying: name, city, account ids, amount."""
        name = self.merchant_name or "(no name)"
        if self.alternate_name:
            name += f" / {self.alternate_name}"
        parts = [name + (f", {self.city}" if self.city else "")]
        parts += [a.describe() for a in self.accounts]
        if self.amount is not None:
            parts.append(f"amount {self.amount} {self.currency_code or self.currency or ''}".rstrip())
        return "; ".join(parts)


def parse_emv(payload: str, *, verify_crc: bool = True) -> EmvPayment:
    """Parse an EMVCo merchant-presented payload; raises EmvFormatError (malformed) or EmvCrcError (bad CRC)."""
    text = payload.strip()
    pairs = parse_tlv(text)
    fields: dict[str, str] = {}
    for tag, value in pairs:
        if tag in fields:
            raise EmvFormatError(f"payload: tag {tag} appears twice")
        fields[tag] = value
    if not pairs or pairs[0] != ("00", "01"):
        raise EmvFormatError("payload: tag 00 (payload format indicator) must come first with value 01")
    if pairs[-1][0] != "63" or len(pairs[-1][1]) != 4:
        raise EmvFormatError("payload: tag 63 (CRC, 4 hex digits) must come last")
    crc = pairs[-1][1].upper()
    expected = f"{crc16_ccitt(text[:-4].encode('utf-8')):04X}"
    if verify_crc and crc != expected:
        raise EmvCrcError(f"payload: CRC (tag 63) is {crc}, the content gives {expected}: damaged or edited")
    accounts = tuple(_account(tag, value) for tag, value in pairs if 26 <= int(tag) <= 51)
    if not accounts:
        raise EmvFormatError("payload: no merchant account information (tags 26-51)")
    amount = fields.get("54")
    if amount is not None and not _AMOUNT.match(amount):
        raise EmvFormatError(f"payload: tag 54 (amount) {amount!r} is not a decimal amount")
    currency = fields.get("53")
    if currency is not None and not (len(currency) == 3 and currency.isdigit()):
        raise EmvFormatError(f"payload: tag 53 (currency) {currency!r} is not an ISO 4217 numeric code")
    poi = fields.get("01")
    initiation: Literal["static", "dynamic"] | None = "static" if poi == "11" else "dynamic" if poi == "12" else None
    additional_pairs = parse_tlv(fields["62"], "tag 62 (additional data)") if "62" in fields else []
    language_pairs = parse_tlv(fields["64"], "tag 64 (merchant information, alternate language)") \
        if "64" in fields else []
    additional, language = dict(additional_pairs), dict(language_pairs)
    duplicates = [d for a in accounts for d in a.duplicate_subtags]
    for tag, sub_pairs in (("62", additional_pairs), ("64", language_pairs)):
        seen = [k for k, _ in sub_pairs]
        duplicates += [f"{tag}.{k}" for k in dict.fromkeys(seen) if seen.count(k) > 1]
    return EmvPayment(
        merchant_name=fields.get("59", "").strip(), city=fields.get("60"), accounts=accounts,
        amount=Decimal(amount) if amount is not None else None, currency=currency, country=fields.get("58"),
        mcc=fields.get("52"), initiation=initiation, additional=additional, crc=crc, crc_ok=crc == expected,
        fields=fields, alternate_name=language.get("01"), duplicate_subtags=tuple(duplicates),
    )


def _account(tag: str, value: str) -> MerchantAccount:
    """A merchant account template; a template that is not TLV inside (some schemes put a plain id) is kept raw."""
    try:
        pairs = parse_tlv(value, f"tag {tag} (merchant account)")
    except EmvFormatError:
        return MerchantAccount(tag, None, {"01": value}, (("01", value),))
    subs = dict(pairs)
    return MerchantAccount(tag, subs.get("00"), subs, tuple(pairs))


@dataclass(frozen=True)
class ExpectedMerchant:
    """The payee a payer expects: the shop's name, optionally its FPS proxy (ID, mobile or e-mail) and city.

    `alternate_name` is the shop's name in its other language (tag 64), when the payer knows both;
    `other_accounts` lists further account ids the shop owns (another scheme's template on a multi-scheme code).
    Without `proxy` only the name is compared, and a name is text anyone can write into a code."""

    name: str
    proxy: str | None = None
    city: str | None = None
    alternate_name: str | None = None
    other_accounts: tuple[str, ...] = ()

@dataclass(frozen=True)
class PaymentReport:
    """What `check_payment` found; `payee` is the text to show the payer before paying."""

    payment: EmvPayment | None
    payee: str
    findings: list[Finding] = field(default_factory=list)
    verdict: Verdict = "ok"


def _norm_name(name: str) -> str:
    """Names compared case-, width- and punctuation-blind (`Wing Kee Co., Ltd.` == `WING KEE CO LTD`)."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def _norm_proxy(proxy: str) -> str:
    """FPS proxies compared without spaces/dashes, case-blind, and with an optional +852 country code dropped."""
    text = re.sub(r"[\s\-()]", "", proxy).casefold()
    return text[4:] if text.startswith("+852") else text


def check_payment(payload: str, expected_merchant: str | ExpectedMerchant) -> PaymentReport:
    """Show the payee of a payment QR and flag a bad CRC or a payee other than `expected_merchant`.

    Every account id in the code must be the expected one (a wallet may pay any of them); both payee names (tag
    59, which most wallets show, and the alternate-language 64.01) must name the expected shop. With a name
    only (a plain string), the verdict is at most "warn": the account was not checked."""
    expected = ExpectedMerchant(expected_merchant) if isinstance(expected_merchant, str) else expected_merchant
    findings: list[Finding] = []
    try:
        payment = parse_emv(payload, verify_crc=False)
    except EmvFormatError as exc:
        findings.append(Finding("malformed", "block", f"not a valid EMVCo payment code: {exc}"))
        return PaymentReport(None, "(unreadable)", findings, "block")
    if not payment.crc_ok:
        findings.append(Finding("crc", "block", "the CRC (tag 63) does not match: the code was damaged or edited"))
    if payment.duplicate_subtags:
        findings.append(Finding("duplicate-subtag", "block", f"sub-tag(s) {', '.join(payment.duplicate_subtags)} "
                                "appear twice: payment apps differ on which one they use"))
    findings += _account_findings(payment, expected)
    findings += _name_findings(payment, expected)
    if expected.city and payment.city and _norm_name(expected.city) != _norm_name(payment.city):
        findings.append(Finding("city-mismatch", "warn", f"merchant city {payment.city!r}, expected {expected.city!r}"))
    if payment.currency is not None and payment.currency_code is None:
        findings.append(Finding("currency", "warn", f"unknown currency code {payment.currency}"))
    if expected.proxy is None and not any(f.severity == "block" for f in findings):
        ids = ", ".join(f"{kind} {value}" for _, kind, value in payment.account_ids()) or "no account id"
        findings.append(Finding("account-unchecked", "warn", f"account not confirmed: check that {ids} is "
                                f"{expected.name}'s (only the name was compared, and anyone can write a name)"))
    return PaymentReport(payment, payment.payee(), findings, verdict_of(findings))


def _account_findings(payment: EmvPayment, expected: ExpectedMerchant) -> list[Finding]:
    """Every account id must be an expected one; without an expected proxy, several FPS ids are ambiguous."""
    ids = payment.account_ids()
    shown = ", ".join(f"{kind} {value}" for _, kind, value in ids) or "no account id"
    if expected.proxy is None:
        fps = {_norm_proxy(value) for tag, _, value in ids if _is_fps(payment, tag)}
        if len(fps) > 1:
            return [Finding("ambiguous-account", "block", f"the code carries {len(fps)} FPS payee accounts ({shown}): "
                            "a payment app may pay any of them")]
        return []
    wanted = {_norm_proxy(p) for p in (expected.proxy, *expected.other_accounts)}
    unexpected = [f"{kind} {value}" for _, kind, value in ids if _norm_proxy(value) not in wanted]
    if not ids or unexpected:
        what = ", ".join(unexpected) if ids else "no account id"
        extra = f" (all accounts in the code: {shown})" if ids and len(unexpected) < len(ids) else ""
        return [Finding("account-mismatch", "block", f"pays {what}, not {expected.name}'s {expected.proxy}{extra}")]
    return [Finding("account-match", "info", f"every account id in the code is {expected.name}'s")]


def _is_fps(payment: EmvPayment, tag: str) -> bool:
    return any(a.tag == tag and a.is_fps for a in payment.accounts)


def _name_findings(payment: EmvPayment, expected: ExpectedMerchant) -> list[Finding]:
    """Tag 59 is always compared; an alternate-language name (64.01) must name the same payee."""
    want = {n for n in (_norm_name(expected.name), _norm_name(expected.alternate_name or "")) if n}
    primary, alternate = payment.merchant_name, payment.alternate_name or ""
    got, alt = _norm_name(primary), _norm_name(alternate)
    unnamed = got in ("", "na")
    if got in want:
        if not alt or alt in want:
            return [Finding("payee-match", "info", f"payee name matches {expected.name}")]
        if expected.alternate_name or not scripts_in(alternate).isdisjoint(scripts_in(expected.name)):
            return [Finding("payee-names-disagree", "block", f"the code names two payees: {primary!r} (tag 59) "
                            f"and {alternate!r} (tag 64, alternate language); {alternate!r} is not "
                            f"{expected.alternate_name or expected.name!r}")]
        return [Finding("alternate-unchecked", "warn", f"the code also names the payee {alternate!r} (alternate "
                        f"language), which was not compared: check that it is {expected.name}")]
    if alt and alt in want and not unnamed:
        return [Finding("payee-names-disagree", "block", f"the code names two payees: {primary!r} (tag 59, what most "
                        f"payment apps show) and {alternate!r} (tag 64); only {alternate!r} is the expected name (if "
                        f"both are the shop's, give ExpectedMerchant(name=..., alternate_name=...))")]
    if alt and alt in want:
        return [Finding("payee-match", "info", f"payee name (alternate language) matches {expected.name}")]
    if skeleton(primary).replace(" ", "") == skeleton(expected.name).replace(" ", ""):
        return [Finding("payee-homoglyph", "block", f"payee {primary!r} only looks like {expected.name!r} "
                        "(different characters)")]
    if unnamed and expected.proxy is not None:
        return [Finding("payee-unnamed", "info", "the code gives no payee name; its account id is compared")]
    if unnamed:
        return [Finding("payee-unnamed", "block", f"the code gives no payee name and no expected account id "
                        f"to compare: cannot confirm it pays {expected.name}")]
    return [Finding("payee-mismatch", "block", f"pays {primary!r}, not {expected.name!r}")]
