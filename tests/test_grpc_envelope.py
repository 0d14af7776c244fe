"""The deployment envelope: schema, chunking, binding, replay, limits — and fuzzing of the decoder.

The decoder path (`parse_frame` -> `Assembler.feed` -> `open_envelope`, which calls `sampan.wire.decode`)
must turn any bytes into a Message or an `EnvelopeError`: no other exception, no hang. Hypothesis runs
100,000+ cases here; with atheris installed this file is also a libFuzzer harness
(`python tests/test_grpc_envelope.py -atheris_runs=100000`), run by the last test.
"""

from __future__ import annotations

if __name__ == "__main__":  # libFuzzer harness: instrument the decoder before anything imports it
    import atheris
    import numpy  # noqa: F401  - dependencies stay uninstrumented: coverage of our decoder is what guides
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: F401

    with atheris.instrument_imports(include=["sampan"]):
        import sampan.transport.grpc_envelope  # noqa: F401
        import sampan.wire.codec  # noqa: F401

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sampan.transport.grpc_envelope import (
    DEPLOY_PROTOCOL_VERSION,
    FIELDS,
    Assembler,
    EnvelopeError,
    FrameKind,
    Limits,
    ProtoFrame,
    ReplayGuard,
    frames_for,
    open_envelope,
    parse_frame,
)
from sampan.wire import Message

SMALL = Limits(chunk_bytes=256, max_message_bytes=64 << 10)
PROTO = Path(__file__).resolve().parents[1] / "src" / "sampan" / "transport" / "grpc_frame.proto"


def decode_stream(frames: list[bytes], limits: Limits = SMALL) -> list[Message]:
    """What a receiver does with a stream of frames: messages out, EnvelopeError for anything refused."""
    assembler, guard, out = Assembler(limits), ReplayGuard(), []
    for raw in frames:
        try:
            frame = parse_frame(raw, limits)
            if frame.kind not in (FrameKind.REQUEST, FrameKind.REPLY):
                continue
            if frame.chunk_index == 0:
                guard.check(frame.nonce, frame.sent_at_ms)
            envelope = assembler.feed(frame)
            if envelope is not None:
                guard.add(envelope.head.nonce)
                out.append(open_envelope(envelope, limits))
        except EnvelopeError:
            assembler.reset()
    return out


def _message(n: int = 100, **meta: object) -> Message:
    return Message("run-1", 7, "coordinator", "bank_a", "fit", {"w": np.arange(n, dtype=np.float64),
                                                                 "c": np.ones((2, 3), np.int32)}, {"k": 1, **meta})


def test_the_proto_file_documents_exactly_the_schema_in_use() -> None:
    text = PROTO.read_text()
    body = text[text.index("message Frame"):]
    declared = {(m.group(2), int(m.group(3))) for m in re.finditer(r"^\s+(\w+) (\w+) = (\d+);", body, re.M)}
    assert declared == {(name, number) for name, number, _ in FIELDS}
    enum = text[text.index("enum FrameKind"):text.index("message Frame")]
    values = {int(v) for v in re.findall(r"= (\d+);", enum)}
    assert values == set(FrameKind.NAMES)


@pytest.mark.parametrize("n", [0, 1, 20, 29, 30, 31, 500])
def test_frames_round_trip_at_every_chunk_boundary(n: int) -> None:
    message = _message(n)
    nonce, frames = frames_for(message, kind=FrameKind.REQUEST, role="coordinator", limits=SMALL)
    assert len(nonce) == 16 and all(len(f) <= SMALL.max_frame_bytes for f in frames)
    got = decode_stream(frames)
    assert len(got) == 1
    np.testing.assert_array_equal(got[0].arrays["w"], message.arrays["w"])
    assert (got[0].run_id, got[0].step, got[0].meta) == ("run-1", 7, {"k": 1})


def test_reassembly_refuses_reordered_interleaved_truncated_or_tampered_chunks() -> None:
    _, a = frames_for(_message(200), kind=FrameKind.REQUEST, role="coordinator", limits=SMALL)
    _, b = frames_for(_message(200), kind=FrameKind.REQUEST, role="coordinator", limits=SMALL)
    assert len(a) > 3
    for frames in ([a[1], *a[2:]], [a[0], a[2], a[1], *a[3:]], [a[0], b[1], *a[1:]], a[:-1]):
        assert decode_stream(frames) == []
    proto = ProtoFrame.FromString(a[-1])
    proto.payload = bytes([proto.payload[0] ^ 1]) + proto.payload[1:]
    with pytest.raises(EnvelopeError, match="SHA-256"):
        assembler = Assembler(SMALL)
        for raw in [*a[:-1], proto.SerializeToString()]:
            assembler.feed(parse_frame(raw, SMALL))


def test_the_message_is_bound_to_its_frame() -> None:
    message = _message()
    data = __import__("sampan.wire", fromlist=["encode"]).encode(message)
    forged = Message("run-2", 7, "coordinator", "bank_a", "fit", message.arrays, message.meta)
    _, frames = frames_for(forged, kind=FrameKind.REQUEST, role="coordinator", limits=SMALL, data=data)
    envelope = None
    assembler = Assembler(SMALL)
    for raw in frames:
        envelope = assembler.feed(parse_frame(raw, SMALL)) or envelope
    assert envelope is not None
    with pytest.raises(EnvelopeError, match="run_id 'run-1' differs from its frame's 'run-2'") as info:
        open_envelope(envelope, SMALL)
    assert info.value.code == "binding"


def test_limits_and_versions_are_enforced_before_buffering() -> None:
    base = dict(version=DEPLOY_PROTOCOL_VERSION, kind=FrameKind.REPLY, nonce=os.urandom(16), chunk_count=1,
                digest=bytes(32), total_bytes=10)
    cases = {
        "incompatible_version": dict(base, version=2),
        "too_large": dict(base, chunk_count=10_000, total_bytes=10_000 * 256),
        "malformed": dict(base, nonce=b"short"),
    }
    for code, fields in cases.items():
        with pytest.raises(EnvelopeError) as info:
            parse_frame(ProtoFrame(**fields).SerializeToString(), SMALL)
        assert info.value.code == code, (code, str(info.value))
    with pytest.raises(EnvelopeError, match="exceeds") as info:
        parse_frame(ProtoFrame(**base, payload=b"x" * 300).SerializeToString(), SMALL)
    assert info.value.code == "too_large"
    with pytest.raises(EnvelopeError, match="link limit"):
        frames_for(_message(10_000), kind=FrameKind.REQUEST, role="coordinator", limits=SMALL)


def test_replay_guard_refuses_repeats_and_stale_frames_within_bounded_memory() -> None:
    guard = ReplayGuard(window_s=10, max_entries=100)
    now = int(time.time() * 1000)
    guard.check(b"a" * 16, now, now)
    guard.add(b"a" * 16, now)
    with pytest.raises(EnvelopeError, match="seen before"):
        guard.check(b"a" * 16, now, now)
    with pytest.raises(EnvelopeError, match="replay window"):
        guard.check(b"b" * 16, now - 11_000, now)
    guard.check(b"a" * 16, now + 11_000, now + 11_000)  # forgotten once outside the window: time refuses it
    for i in range(1000):
        guard.add(i.to_bytes(16, "big"), now)
    assert len(guard._seen) <= 100


# --- fuzzing -----------------------------------------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - only once importorskip found it
from hypothesis import strategies as st  # noqa: E402 - likewise

_VALID = [f for m in (_message(0), _message(60), _message(3), _message(300, note="x" * 50))
          for f in frames_for(m, kind=FrameKind.REQUEST, role="coordinator", limits=SMALL)[1]]
_FUZZ = settings(max_examples=1_000, deadline=2000, database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))
BULK_EXAMPLES, CASES_PER_EXAMPLE = 2_000, 60  # 120,000 cases


@st.composite
def _mutated(draw: st.DrawFn) -> list[bytes]:
    frames = draw(st.lists(st.sampled_from(_VALID), min_size=1, max_size=6))
    out = []
    for raw in frames:
        buf = bytearray(raw)
        for _ in range(draw(st.integers(0, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
            i = draw(st.integers(0, max(len(buf) - 1, 0)))
            if op == "flip" and buf:
                buf[i] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del buf[i:i + draw(st.integers(1, 64))]
            elif op == "insert":
                buf[i:i] = draw(st.binary(min_size=1, max_size=16))
            else:
                buf = buf[:i] + bytearray(draw(st.sampled_from(_VALID))[i:])
        out.append(bytes(buf))
    return out


_fields = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from([0, 1, 2, 2**32 - 1]), "kind": st.integers(0, 7),
    "run_id": st.text(max_size=8), "step": st.integers(0, 2**64 - 1), "nonce": st.binary(max_size=20),
    "sender": st.text(max_size=4), "recipient": st.text(max_size=4), "role": st.text(max_size=4),
    "in_reply_to": st.binary(max_size=20), "chunk_index": st.integers(0, 2**32 - 1),
    "chunk_count": st.integers(0, 2**32 - 1), "total_bytes": st.integers(0, 2**64 - 1),
    "payload": st.binary(max_size=300), "detail": st.text(max_size=20), "digest": st.binary(max_size=40),
    "sent_at_ms": st.integers(0, 2**64 - 1), "code": st.text(max_size=4)})


@_FUZZ
@given(st.lists(st.binary(max_size=400), min_size=1, max_size=4))
def test_fuzz_random_bytes(frames: list[bytes]) -> None:
    decode_stream(frames)


@_FUZZ
@given(_mutated())
def test_fuzz_mutated_valid_frames(frames: list[bytes]) -> None:
    decode_stream(frames)


@_FUZZ
@given(st.lists(_fields, min_size=1, max_size=4))
def test_fuzz_structured_frames(fields: list[dict[str, object]]) -> None:
    decode_stream([ProtoFrame(**f).SerializeToString() for f in fields])


@_FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_wire_payload_inside_a_well_formed_frame(payload: bytes) -> None:
    """Valid framing around arbitrary message bytes: the wire codec must refuse them cleanly."""
    import hashlib

    fields = dict(version=DEPLOY_PROTOCOL_VERSION, kind=FrameKind.REQUEST, nonce=os.urandom(16), run_id="r",
                  total_bytes=len(payload), digest=hashlib.sha256(payload).digest(), sent_at_ms=int(time.time() * 1000))
    count = max(1, -(-len(payload) // SMALL.chunk_bytes))
    frames = [ProtoFrame(**fields, chunk_index=i, chunk_count=count,
                         payload=payload[i * SMALL.chunk_bytes:(i + 1) * SMALL.chunk_bytes]).SerializeToString()
              for i in range(count)]
    decode_stream(frames)


def _random_case(rng: random.Random) -> list[bytes]:
    """One fuzz case: random bytes, a mutated stream of valid frames, or random protobuf fields."""
    roll = rng.random()
    if roll < 0.25:
        return [rng.randbytes(rng.randrange(0, 400)) for _ in range(rng.randrange(1, 4))]
    if roll < 0.8:
        frames = []
        for _ in range(rng.randrange(1, 6)):
            buf = bytearray(rng.choice(_VALID))
            for _ in range(rng.randrange(0, 5)):
                i = rng.randrange(0, max(len(buf), 1))
                op = rng.randrange(4)
                if op == 0 and buf:
                    buf[i] ^= 1 << rng.randrange(8)
                elif op == 1:
                    del buf[i:i + rng.randrange(1, 64)]
                elif op == 2:
                    buf[i:i] = rng.randbytes(rng.randrange(1, 16))
                else:
                    buf = buf[:i] + bytearray(rng.choice(_VALID)[i:])
            frames.append(bytes(buf))
        return frames
    fields = {
        "version": rng.choice([0, 1, 1, 1, 2]),
        "kind": rng.randrange(0, 7),
        "nonce": rng.randbytes(rng.choice([16, 16, 3])),
        "chunk_index": rng.choice([0, 0, 1, rng.randrange(2**32)]),
        "chunk_count": rng.choice([1, 1, 2, rng.randrange(2**32)]),
        "total_bytes": rng.randrange(0, 1 << rng.randrange(1, 64)),
        "payload": rng.randbytes(rng.randrange(0, 300)),
        "digest": rng.randbytes(rng.choice([32, 32, 0, 7])),
        "step": rng.randrange(0, 1 << rng.randrange(1, 64)),
        "run_id": rng.choice(["", "r", "x" * 300]),
        "sent_at_ms": rng.choice([int(time.time() * 1000), rng.randrange(2**64)]),
    }
    return [ProtoFrame(**{k: v for k, v in fields.items() if rng.random() < 0.85}).SerializeToString()]


@settings(
    max_examples=BULK_EXAMPLES, deadline=5000, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(st.integers(0, 2**63))
def test_fuzz_bulk_120k_cases(seed: int) -> None:
    """Hypothesis draws the seeds; each seeds 60 cheap cases (120k in all), reported by seed on failure."""
    rng = random.Random(seed)
    for case in range(CASES_PER_EXAMPLE):
        frames = _random_case(rng)
        try:
            decode_stream(frames)
        except Exception as exc:  # pragma: no cover - a failure is the point of this test
            raise AssertionError(f"seed {seed}, case {case}: {type(exc).__name__}: {exc}; frames {frames!r}") from exc


def test_atheris_finds_no_crash_in_100k_runs() -> None:
    pytest.importorskip("atheris")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "-atheris_runs=100000", "-max_len=512", "-seed=1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 100000 in" in result.stderr, result.stderr[-2000:]
    assert time.perf_counter() - started < 300


def _atheris_main() -> None:  # pragma: no cover - runs in a subprocess
    import atheris

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        frames = []
        while fdp.remaining_bytes():
            if fdp.ConsumeBool():
                frames.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600)))
            else:  # a valid frame with a few bytes changed
                buf = bytearray(_VALID[fdp.ConsumeIntInRange(0, len(_VALID) - 1)])
                for _ in range(fdp.ConsumeIntInRange(0, 3)):
                    if buf:
                        buf[fdp.ConsumeIntInRange(0, len(buf) - 1)] = fdp.ConsumeIntInRange(0, 255)
                frames.append(bytes(buf))
        decode_stream(frames)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    _atheris_main()
