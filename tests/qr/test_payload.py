"""Signed item codes: round trips, canonical encoding, and every refusal (forged, other key, expired, malformed)."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampan.errors import ExitCode, SampanError
from sampan.qr.keys import (
    IssuerKeyError,
    generate_issuer_key,
    load_issuer_key,
    load_public_keys,
    public_key_hex,
    save_issuer_key,
)
from sampan.qr.payload import (
    DOMAIN,
    PREFIX,
    BadSignatureError,
    ExpiredCodeError,
    ItemCode,
    ItemCodeError,
    MalformedCodeError,
    UnknownIssuerError,
    base45_decode,
    base45_encode,
    decode_unverified,
    encode_body,
    sign,
    verify,
)

NOW = dt.datetime(2027, 1, 15, 12, tzinfo=dt.UTC)
ACME = generate_issuer_key("acme-hk")
EVIL = generate_issuer_key("evil")
TRUST = {"acme-hk": public_key_hex(ACME)}


def _code(**kw: object) -> ItemCode:
    fields: dict[str, object] = {"serial": "SN-000123456", "issuer": "acme-hk", "expiry": dt.date(2027, 6, 30)}
    fields.update(kw)
    return ItemCode(**fields)  # type: ignore[arg-type]


def _signed_raw(body: bytes, key: object = ACME) -> str:
    """A text whose (possibly non-canonical) body carries a *valid* signature: only the parser can refuse it."""
    return PREFIX + base45_encode(body + key.sign(DOMAIN + body))  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [
    _code(),
    _code(expiry=dt.datetime(2027, 6, 30, 18, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))),
    _code(cdp_seed_id="cdp-7", serial="A" * 64, issuer="acme-hk"),
])
def test_round_trip_is_exact(code: ItemCode) -> None:
    text = sign(code, ACME)
    assert verify(text, TRUST, now=NOW) == code
    assert decode_unverified(text) == code
    assert sign(code, ACME) == text  # Ed25519 is deterministic: one code, one text


def test_text_is_compact_qr_alphanumeric() -> None:
    text = sign(_code(), ACME)
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert len(encode_body(_code())) == 27  # 2 + (1 + 7) + (1 + 12) + 4
    assert len(text) == len(PREFIX) + 45 * 3 + 2 == 140  # 91 bytes with the signature, base45


def test_datetime_expiry_is_normalised_to_whole_utc_seconds() -> None:
    code = _code(expiry=dt.datetime(2027, 6, 30, 10, 0, 0, 999, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    assert code.expiry == dt.datetime(2027, 6, 30, 2, tzinfo=dt.UTC)
    with pytest.raises(MalformedCodeError, match="naive"):
        _code(expiry=dt.datetime(2027, 6, 30))


@pytest.mark.parametrize("field, value", [("serial", ""), ("serial", "a b"), ("serial", "x" * 65),
                                          ("issuer", "ACMÉ"), ("cdp_seed_id", "")])
def test_bad_fields_are_named(field: str, value: str) -> None:
    with pytest.raises(MalformedCodeError, match=field):
        _code(**{field: value})


def test_altered_payload_is_refused() -> None:
    text = sign(_code(), ACME)
    body = encode_body(_code())
    forged = body.replace(b"SN-000123456", b"SN-000123457")
    with pytest.raises(BadSignatureError, match="does not verify"):
        verify(PREFIX + base45_decode_tail_swap(text, forged), TRUST, now=NOW)
    for position in range(len(PREFIX), len(text), 7):  # any changed character: malformed or bad signature
        swapped = "0" if text[position] != "0" else "1"
        with pytest.raises(ItemCodeError):
            verify(text[:position] + swapped + text[position + 1:], TRUST, now=NOW)


def base45_decode_tail_swap(text: str, body: bytes) -> str:
    """The base45 part of `text` with its body replaced and its signature kept."""
    raw = base45_decode(text[len(PREFIX):])
    return base45_encode(body + raw[-64:])


def test_signature_by_another_issuers_key_is_refused() -> None:
    with pytest.raises(IssuerKeyError, match="belongs to 'evil'"):
        sign(_code(), EVIL)
    text = _signed_raw(encode_body(_code()), EVIL)  # the code names acme-hk, the attacker signs with its own key
    with pytest.raises(BadSignatureError, match="acme-hk"):
        verify(text, TRUST, now=NOW)
    both = {**TRUST, "evil": public_key_hex(EVIL)}
    with pytest.raises(BadSignatureError):  # trusting the attacker as an issuer does not let it speak for acme
        verify(text, both, now=NOW)


def test_unknown_issuer_is_refused() -> None:
    text = sign(_code(issuer="evil"), EVIL)
    with pytest.raises(UnknownIssuerError, match="'evil'"):
        verify(text, TRUST, now=NOW)


def test_expiry() -> None:
    text = sign(_code(expiry=dt.date(2027, 6, 30)), ACME)
    assert verify(text, TRUST, now=dt.datetime(2027, 6, 30, 23, 59, tzinfo=dt.UTC))  # valid through the day
    with pytest.raises(ExpiredCodeError, match="expired on 2027-06-30"):
        verify(text, TRUST, now=dt.datetime(2027, 7, 1, tzinfo=dt.UTC))
    exact = sign(_code(expiry=dt.datetime(2027, 6, 30, 12, tzinfo=dt.UTC)), ACME)
    verify(exact, TRUST, now=dt.datetime(2027, 6, 30, 11, 59, 59, tzinfo=dt.UTC))
    with pytest.raises(ExpiredCodeError):
        verify(exact, TRUST, now=dt.datetime(2027, 6, 30, 12, tzinfo=dt.UTC))
    with pytest.raises(ExpiredCodeError):  # default clock: today
        verify(sign(_code(expiry=dt.date(2020, 1, 1)), ACME), TRUST)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: bytes([2]) + b[1:], "version 2"),
    (lambda b: b[:1] + bytes([b[1] | 0x80]) + b[2:], "unknown bits"),
    (lambda b: b[:1] + bytes([b[1] | 0x02]) + b[2:], "ends inside"),  # claims a seed id that is not there
    (lambda b: b[:2] + bytes([b[2] + 1]) + b[3:], "'issuer'|'serial'|ends inside"),  # length off by one
    (lambda b: b[:2] + b"\x00" + b[3:], "issuer"),  # empty issuer
    (lambda b: b[:3] + b"acme hk" + b[10:], "issuer"),  # a character outside the alphabet
])
def test_validly_signed_but_non_canonical_payloads_are_refused(mutate: object, message: str) -> None:
    body = mutate(encode_body(_code()))  # type: ignore[operator]
    with pytest.raises(MalformedCodeError, match=message):
        verify(_signed_raw(body), TRUST, now=NOW)


@pytest.mark.parametrize("text, message", [
    ("HTTPS://EVIL.EXAMPLE", "must start with 'SQ:'"),
    ("sq:" + base45_encode(b"x" * 100), "must start"),
    (PREFIX + "ABCD", "dangling"),
    (PREFIX + ":::", "out of range"),  # 44 + 44*45 + 44*2025 > 65535: no encoder writes it
    (PREFIX + "::", "out of range"),  # 44 + 44*45 > 255
    (PREFIX + "abc", "alphabet"),
    (PREFIX + base45_encode(b"\x01" * 40), "too short"),
])
def test_malformed_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(MalformedCodeError, match=message):
        verify(text, TRUST, now=NOW)


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_base45_is_canonical(data: bytes) -> None:
    text = base45_encode(data)
    assert base45_decode(text) == data
    assert base45_encode(base45_decode(text)) == text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=200))
def test_garbage_only_raises_item_code_errors(tail: str) -> None:
    with pytest.raises(ItemCodeError):
        verify(PREFIX + tail, TRUST, now=NOW)


def test_errors_are_protocol_errors() -> None:
    for error in (MalformedCodeError, BadSignatureError, UnknownIssuerError, ExpiredCodeError):
        assert issubclass(error, SampanError) and error.exit_code == ExitCode.PROTOCOL


def test_issuer_key_file_is_private_and_round_trips(tmp_path: os.PathLike[str]) -> None:
    folder = os.path.join(tmp_path, "keys")
    os.mkdir(folder, 0o700)
    path = os.path.join(folder, "acme.json")
    save_issuer_key(ACME, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = load_issuer_key(path)
    assert loaded.issuer == "acme-hk" and loaded.public_raw == ACME.public_raw
    assert "PRIVATE" not in repr(loaded) and loaded.key_id in repr(loaded)
    with pytest.raises(IssuerKeyError, match="exists"):
        save_issuer_key(EVIL, path)
    os.chmod(path, 0o644)
    with pytest.raises(IssuerKeyError, match="chmod 600"):
        load_issuer_key(path)
    with pytest.raises(IssuerKeyError, match="does not exist"):
        load_issuer_key(os.path.join(folder, "missing.json"))
    shared = os.path.join(tmp_path, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    with pytest.raises(IssuerKeyError, match="writable by other users"):
        save_issuer_key(ACME, os.path.join(shared, "acme.json"))


def test_trust_list_refuses_bad_keys() -> None:
    assert load_public_keys({"acme-hk": ACME.public_raw})["acme-hk"] is not None
    with pytest.raises(IssuerKeyError, match="64 hex"):
        load_public_keys({"acme-hk": "zz"})
