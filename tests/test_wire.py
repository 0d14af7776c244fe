"""Wire codec: round-trips for any message, and WireError (never a crash) for any garbage."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sampan.wire import PROTOCOL_VERSION, Message, WireError, decode, encode
from sampan.wire.codec import ALLOWED_DTYPES, PREFIX_SIZE

dtypes = st.sampled_from(sorted(ALLOWED_DTYPES)).map(np.dtype)
arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
names = st.text(min_size=1, max_size=30)

messages = st.builds(
    Message,
    run_id=st.text(max_size=40),
    step=st.integers(0, 2**40),
    sender=names,
    recipient=names,
    kind=names,
    arrays=st.dictionaries(names, arrays, max_size=5),
    meta=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)


def _assert_same(a: Message, b: Message) -> None:
    assert (a.run_id, a.step, a.sender, a.recipient, a.kind) == (b.run_id, b.step, b.sender, b.recipient, b.kind)
    assert a.meta == b.meta
    assert list(a.arrays) == list(b.arrays)
    for name, arr in a.arrays.items():
        got = b.arrays[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_round_trip_preserves_every_field(message: Message) -> None:
    _assert_same(message, decode(encode(message)))


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_wire_error_only(data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.data())
def test_any_truncation_or_bit_flip_is_wire_error_or_valid(message: Message, data: st.DataObject) -> None:
    raw = encode(message)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(WireError):
        decode(raw[:cut])
    flipped = bytearray(raw)
    pos = data.draw(st.integers(0, len(raw) - 1))
    flipped[pos] ^= 1 << data.draw(st.integers(0, 7))
    try:
        decode(bytes(flipped))  # a flip inside array data is a valid (different) message
    except WireError:
        pass


def test_wrong_version_is_named() -> None:
    raw = bytearray(encode(Message("r", 0, "a", "b", "k")))
    struct.pack_into("<H", raw, 4, PROTOCOL_VERSION + 1)
    with pytest.raises(WireError, match="version"):
        decode(bytes(raw))


def test_oversized_message_rejected_before_parsing() -> None:
    raw = encode(Message("r", 0, "a", "b", "k", arrays={"x": np.zeros(1000)}))
    with pytest.raises(WireError, match="limit"):
        decode(raw, max_message_bytes=1000)


def _forge(header: bytes, payload: bytes = b"") -> bytes:
    return struct.pack("<4sHHIQ", b"SMPN", PROTOCOL_VERSION, 0, len(header), len(payload)) + header + payload


def test_wrong_dtype_in_manifest_rejected() -> None:
    header = (
        b'{"run_id":"r","step":0,"sender":"a","recipient":"b","kind":"k","meta":{},'
        b'"arrays":[{"name":"x","dtype":"object","shape":[1]}]}'
    )
    with pytest.raises(WireError, match="dtype"):
        decode(_forge(header, b"\0" * 8))


def test_manifest_claiming_huge_array_rejected_without_allocating() -> None:
    header = (
        b'{"run_id":"r","step":0,"sender":"a","recipient":"b","kind":"k","meta":{},'
        b'"arrays":[{"name":"x","dtype":"float64","shape":[1099511627775,1099511627775]}]}'
    )
    with pytest.raises(WireError, match="past the end"):
        decode(_forge(header, b"\0" * 8))


def test_trailing_bytes_and_nan_header_rejected() -> None:
    good = b'{"run_id":"r","step":0,"sender":"a","recipient":"b","kind":"k","meta":{},"arrays":[]}'
    with pytest.raises(WireError, match="unclaimed"):
        decode(_forge(good, b"xx"))
    nan = good.replace(b'"meta":{}', b'"meta":{"x":NaN}')
    with pytest.raises(WireError, match="non-finite"):
        decode(_forge(nan))


def test_encode_rejects_objects_and_nan_meta() -> None:
    with pytest.raises(WireError, match="dtype"):
        encode(Message("r", 0, "a", "b", "k", arrays={"x": np.array(["a"], dtype=object)}))
    with pytest.raises(WireError, match="JSON"):
        encode(Message("r", 0, "a", "b", "k", meta={"auc": float("nan")}))


def test_big_endian_input_is_stored_little_endian() -> None:
    x = np.arange(5, dtype=">f8")
    raw = encode(Message("r", 0, "a", "b", "k", arrays={"x": x}))
    assert raw[-40:] == np.arange(5, dtype="<f8").tobytes()
    np.testing.assert_array_equal(decode(raw).arrays["x"], x)
    assert PREFIX_SIZE == 20
