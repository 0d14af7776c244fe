"""Versioned binary codec for `Message`: no pickle, safe on untrusted bytes.

Layout (all integers little-endian)::

    magic  b"SMPN"          4 bytes
    version                 u16   (PROTOCOL_VERSION)
    flags                   u16   (reserved, must be 0)
    header_len              u32
    payload_len             u64
    header                  UTF-8 JSON: envelope fields, meta, array manifest [{name, dtype, shape}]
    payload                 arrays' raw little-endian bytes, concatenated in manifest order

Decoding validates every length, dtype and shape against the manifest and the configured limits
before touching the payload, and reports any problem as `WireError` — never another exception type,
never an allocation sized by an attacker beyond `max_message_bytes`.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from sampan.errors import ProtocolError
from sampan.wire.message import Message

MAGIC = b"SMPN"
PROTOCOL_VERSION = 1
_PREFIX = struct.Struct("<4sHHIQ")
PREFIX_SIZE = _PREFIX.size

DEFAULT_MAX_MESSAGE_BYTES = 1 << 30  # 1 GiB; transports set tighter limits per link
MAX_HEADER_BYTES = 16 << 20
MAX_ARRAYS = 4096
MAX_NDIM = 32
MAX_NAME_LENGTH = 256

# Only fixed-size numeric types; always stored little-endian.
ALLOWED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32",
        "int64", "uint64", "float16", "float32", "float64",
    )
}


class WireError(ProtocolError, ValueError):
    """Bytes that are not a valid Sampan message, or a message that cannot be encoded."""


_NAME_BY_DTYPE: dict[np.dtype, str] = {
    **{np.dtype(name): name for name in ALLOWED_DTYPES},
    **{dtype: name for name, dtype in ALLOWED_DTYPES.items()},
}


def _dtype_name(array: np.ndarray) -> str:
    name = _NAME_BY_DTYPE.get(array.dtype)  # a dict hit: `dtype.name` is slow on the per-message path
    if name is None:
        name = array.dtype.name
    if name not in ALLOWED_DTYPES:
        raise WireError(
            f"array dtype {array.dtype} cannot travel on the wire; allowed: {', '.join(ALLOWED_DTYPES)}"
        )
    return name


def encode(message: Message) -> bytes:
    """Serialise a message. Raises WireError for unsupported arrays or non-JSON metadata."""
    manifest: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    payload_len = 0
    if len(message.arrays) > MAX_ARRAYS:
        raise WireError(f"message has {len(message.arrays)} arrays; the limit is {MAX_ARRAYS}")
    for name, value in message.arrays.items():
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            raise WireError(f"array name {name!r} must be a non-empty string of at most {MAX_NAME_LENGTH} chars")
        array = np.asarray(value)
        dtype_name = _dtype_name(array)
        if array.ndim > MAX_NDIM:
            raise WireError(f"array {name!r} has {array.ndim} dimensions; the limit is {MAX_NDIM}")
        little = np.ascontiguousarray(array, dtype=ALLOWED_DTYPES[dtype_name])
        manifest.append({"name": name, "dtype": dtype_name, "shape": list(array.shape)})
        chunks.append(little.data.cast("B") if little.size else b"")
        payload_len += little.nbytes
    header = {
        "run_id": message.run_id,
        "step": message.step,
        "sender": message.sender,
        "recipient": message.recipient,
        "kind": message.kind,
        "meta": message.meta,
        "arrays": manifest,
    }
    try:
        header_bytes = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise WireError(f"message meta must be plain JSON (no NaN/inf, no objects): {exc}") from None
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise WireError(f"message header is {len(header_bytes)} bytes; the limit is {MAX_HEADER_BYTES}")
    prefix = _PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, len(header_bytes), payload_len)
    return b"".join([prefix, header_bytes, *chunks])


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise WireError(problem)


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = _HEADER_DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireError(f"message header is not valid UTF-8 JSON: {exc}") from None
    _require(isinstance(header, dict), "message header must be a JSON object")
    for key, kind in (("run_id", str), ("sender", str), ("recipient", str), ("kind", str),
                      ("step", int), ("meta", dict), ("arrays", list)):
        _require(key in header, f"message header lacks field {key!r}")
        value = header[key]
        _require(isinstance(value, kind) and not isinstance(value, bool),
                 f"message header field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    _require(header["step"] >= 0, "message step must be non-negative")
    _require(len(header["arrays"]) <= MAX_ARRAYS, f"message declares more than {MAX_ARRAYS} arrays")
    return header


def _reject_constant(token: str) -> None:
    raise WireError(f"message header contains non-finite number {token}")


_HEADER_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: json.loads(**kw) rebuilds it


def _array_spec(entry: Any) -> tuple[str, np.dtype, tuple[int, ...], int]:
    _require(isinstance(entry, dict), "array manifest entry must be an object")
    name, dtype_name, shape = entry.get("name"), entry.get("dtype"), entry.get("shape")
    _require(isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH, f"bad array name {name!r}")
    _require(isinstance(dtype_name, str) and dtype_name in ALLOWED_DTYPES,
             f"array {name!r} has unsupported dtype {dtype_name!r}")
    _require(isinstance(shape, list) and len(shape) <= MAX_NDIM, f"array {name!r} has a bad shape")
    for dim in shape:
        _require(isinstance(dim, int) and not isinstance(dim, bool) and 0 <= dim < (1 << 40),
                 f"array {name!r} has a bad dimension {dim!r}")
    dtype = ALLOWED_DTYPES[dtype_name]
    count = math.prod(shape)
    return name, dtype, tuple(shape), count * dtype.itemsize


def decode(data: bytes | bytearray | memoryview, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Parse bytes into a Message, raising WireError on anything malformed or over the limits."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    total = len(view)
    _require(total <= max_message_bytes, f"message is {total} bytes; the limit is {max_message_bytes}")
    _require(total >= PREFIX_SIZE, f"message truncated: {total} bytes is shorter than the {PREFIX_SIZE}-byte prefix")
    magic, version, flags, header_len, payload_len = _PREFIX.unpack_from(view, 0)
    _require(magic == MAGIC, "not a Sampan message (bad magic bytes)")
    _require(version == PROTOCOL_VERSION,
             f"unsupported wire protocol version {version}; this build speaks version {PROTOCOL_VERSION}")
    _require(flags == 0, f"unsupported message flags {flags:#x}")
    _require(header_len <= MAX_HEADER_BYTES, f"message header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    expected = PREFIX_SIZE + header_len + payload_len
    _require(total == expected,
             f"message length {total} does not match its prefix ({expected} bytes expected): truncated or padded")
    header = _parse_header(bytes(view[PREFIX_SIZE:PREFIX_SIZE + header_len]))
    arrays: dict[str, np.ndarray] = {}
    offset = PREFIX_SIZE + header_len
    end = offset + payload_len
    for entry in header["arrays"]:
        name, dtype, shape, nbytes = _array_spec(entry)
        _require(name not in arrays, f"array {name!r} appears twice")
        _require(offset + nbytes <= end, f"array {name!r} runs past the end of the payload")
        flat = np.frombuffer(view[offset:offset + nbytes], dtype=dtype) if nbytes else np.empty(0, dtype)
        arrays[name] = flat.reshape(shape).astype(dtype.newbyteorder("="), copy=True)
        offset += nbytes
    _require(offset == end, f"payload has {end - offset} unclaimed trailing bytes")
    return Message(
        run_id=header["run_id"],
        step=header["step"],
        sender=header["sender"],
        recipient=header["recipient"],
        kind=header["kind"],
        arrays=arrays,
        meta=header["meta"],
    )
