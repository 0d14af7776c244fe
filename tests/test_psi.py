"""PSI entity alignment: correctness against set intersection, privacy of the carried bytes, errors."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import unicodedata

import gmpy2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sampan.core.party import PartyApp
from sampan.core.transport import PartyError
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical import psi_party, psi_points
from sampan.vertical._parallel import ParallelError, map_ranges, map_records
from sampan.vertical.psi import (
    MODE_REVEALS,
    MODES,
    align,
    blind,
    hash_to_curve,
    match_tokens,
    run_psi,
)
from sampan.vertical.psi_ids import id_shape
from sampan.vertical.psi_party import PsiParty
from sampan.wire import Message, encode

P = 2**255 - 19


class Recorder:
    """Wraps a PartyApp and keeps the encoded bytes of every request and reply it sees."""

    def __init__(self, app: PartyApp, log: list[tuple[Message, bytes]]) -> None:
        self.app, self.name, self.log = app, app.name, log

    def handle(self, message: Message) -> Message:
        self.log.append((message, encode(message)))
        reply = self.app.handle(message)
        self.log.append((reply, encode(reply)))
        return reply


def federation(ids: dict[str, list[str]], *, run_id: str = "run-1", workers: int | None = None,
               record: list[tuple[Message, bytes]] | None = None) -> tuple[dict[str, PsiParty], InProcessTransport]:
    parties = {name: PsiParty(name, np.array(v, dtype=object), workers=workers) for name, v in ids.items()}
    keys = {name: PartyKeys.generate() for name in parties}
    public = {name: k.public_bytes for name, k in keys.items()}
    roles = {name: "label_holder" if name == "bank" else "partner" for name in parties}  # as signed in vertical.peers
    apps: dict[str, object] = {}
    for name, party in parties.items():
        app = PartyApp(name)
        party.register(app)
        party.channels = SealedChannels(name, keys[name], public, run_id, roles=roles)
        apps[name] = app if record is None else Recorder(app, record)
    return parties, InProcessTransport(apps)  # type: ignore[arg-type]


def random_sets(seed: int, n_a: int, n_b: int, n_common: int, fmt: str = "BR%08d") -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    pool = [fmt % i for i in rng.sample(range(10**7), n_a + n_b - n_common)]
    common = pool[:n_common]
    a = common + pool[n_common:n_a]
    b = common + pool[n_a:]
    rng.shuffle(a)
    rng.shuffle(b)
    return a, b


def unicode_sets(seed: int, n_a: int, n_b: int, n_common: int) -> tuple[list[str], list[str]]:
    """Unicode ids; the partner's copies are NFD-decomposed and padded, which normalisation must undo."""
    a, b = random_sets(seed, n_a, n_b, n_common, fmt="Zoé-客户%07d")
    b = [f"  {unicodedata.normalize('NFD', s)}\t" for s in b]
    return a, b


def norm(s: str) -> str:
    return unicodedata.normalize("NFC", s).strip()


# --- hash to curve, blinding, matching ----------------------------------------------------------

def test_hash_to_curve_lands_on_the_curve_and_is_deterministic() -> None:
    ids = [f"id-{i}".encode() for i in range(300)] + ["客户".encode()]
    points = hash_to_curve(ids)
    assert points.shape == (301, 32) and points.dtype == np.uint8
    assert np.array_equal(points, hash_to_curve(ids))
    assert len({bytes(p) for p in points}) == 301
    for row in points:
        u = int.from_bytes(bytes(row), "little")
        assert u < P and u >> 255 == 0
        assert gmpy2.legendre((u**3 + 486662 * u**2 + u) % P, P) == 1  # curve, not twist


def _elligator2_reference(idb: bytes) -> int:
    """RFC 9380 Elligator 2 (Z = 2) x-coordinate with a plain modular inverse, written apart from the module."""
    a = 486662
    r = int.from_bytes(hashlib.sha512(b"sampan/psi/v2/curve25519/elligator2/" + idb).digest(), "little") % P
    u1 = -a * pow(1 + 2 * r * r, -1, P) % P
    on_curve = pow((u1**3 + a * u1**2 + u1) % P, (P - 1) // 2, P) == 1  # Euler's criterion, not gmpy2
    return u1 if on_curve else (-a - u1) % P


def test_elligator2_follows_the_documented_construction() -> None:
    ids = [b"BR00000042", b"", "客户".encode(), b"x" * 256] + [b"e%d" % i for i in range(60)]
    got = hash_to_curve(ids)
    for idb, row in zip(ids, got, strict=True):
        assert bytes(row) == _elligator2_reference(idb).to_bytes(32, "little")
    assert psi_points._DOMAIN == b"sampan/psi/v2/curve25519/elligator2/"
    assert gmpy2.legendre(P - 486662, P) == -1  # -A is not a square: the module's square test relies on it


def test_elligator2_never_leaves_the_curve_and_hits_both_branches() -> None:
    """Many ids: every point is on the curve (so no blinded token is on the twist), and both of the map's
    branches (u1 and -A - u1) occur, so the batched inverse is checked on each."""
    ids = [b"m%d" % i for i in range(4000)]
    got = hash_to_curve(ids)
    branches = set()
    for idb, row in zip(ids[:400], got[:400], strict=True):
        r = int.from_bytes(hashlib.sha512(psi_points._DOMAIN + idb).digest(), "little") % P
        branches.add(int.from_bytes(bytes(row), "little") == -486662 * pow(1 + 2 * r * r, -1, P) % P)
    assert branches == {True, False}
    for row in got:
        u = int.from_bytes(bytes(row), "little")
        assert 0 < u < P and gmpy2.legendre((u**3 + 486662 * u**2 + u) % P, P) == 1


def test_blinding_commutes_and_matches_the_public_api() -> None:
    h = hash_to_curve([f"c{i}".encode() for i in range(50)])
    ka, kb = psi_party._new_scalar(), psi_party._new_scalar()
    ab, ba = blind(blind(h, ka), kb), blind(blind(h, kb), ka)
    assert np.array_equal(ab, ba)
    reference = [ka.exchange(X25519PublicKey.from_public_bytes(bytes(p))) for p in h]
    assert blind(h, ka).tobytes() == b"".join(reference)


def test_blind_rejects_low_order_points() -> None:
    with pytest.raises(ValueError):
        blind(np.zeros((3, 32), np.uint8), psi_party._new_scalar())


def test_match_tokens_canonical_order_and_prefix_collision_fallback() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (400, 32), dtype=np.uint8)
    y = np.concatenate([x[100:300], rng.integers(0, 256, (150, 32), dtype=np.uint8)])[rng.permutation(350)]
    ix, iy = match_tokens(x, y)
    assert np.array_equal(x[ix], y[iy]) and len(ix) == 200
    assert [bytes(t) for t in x[ix]] == sorted(bytes(t) for t in x[100:300])
    # Two tokens with one 8-byte prefix but different tails: the exact path must keep them apart.
    z = x.copy()
    z[1, :8] = z[0, :8]
    ix2, iy2 = match_tokens(z, z[::-1].copy())
    assert len(ix2) == 400 and np.array_equal(z[ix2], z[::-1][iy2])
    assert [bytes(t) for t in z[ix2]] == sorted(bytes(t) for t in z)


def test_id_shape() -> None:
    assert id_shape(["BR00000001", "BR00000002", "X1"]) == "AA99999999"
    assert id_shape(["客户-0012"]) == "AA-9999"
    assert id_shape(["--", "++"]) == "??"  # an all-punctuation shape would be the id itself


# --- the parallel map ----------------------------------------------------------------------------

def _digest_range(start: int, stop: int) -> bytes:
    return b"".join(hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(start, stop))


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_map_equals_inline(workers: int) -> None:
    inline = _digest_range(0, 5003)
    assert map_ranges(_digest_range, 5003, 32, workers=workers, inline_below=0) == inline
    assert map_ranges(_digest_range, 5003, 32, workers=workers) == inline  # default threshold: forks
    assert map_ranges(_digest_range, 7, 32, workers=workers, inline_below=0) == _digest_range(0, 7)
    data = os.urandom(16 * 4001)

    def flip(block: memoryview) -> bytes:  # per 16-byte record: its first half, inverted
        return b"".join(bytes(x ^ 0xFF for x in block[i:i + 8]) for i in range(0, len(block), 16))

    assert map_records(flip, data, 16, 8, workers=workers, inline_below=0) == flip(data)


def test_parallel_blinding_equals_inline() -> None:
    ids = [f"客户{i:06d}".encode() for i in range(2500)]
    key = psi_party._new_scalar()
    fast, _ = psi_points._hash_and_blind(ids, key, workers=2)
    slow, _ = psi_points._hash_and_blind(ids, key, workers=1)
    assert np.array_equal(fast, slow)
    assert np.array_equal(blind(fast, key, workers=3), blind(fast, key, workers=1))


def test_parallel_worker_crash_is_a_clear_error() -> None:
    parent = os.getpid()

    def dies(start: int, stop: int) -> bytes:
        if os.getpid() != parent and start > 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return bytes(stop - start)

    def raises(start: int, stop: int) -> bytes:
        raise ArithmeticError("boom")

    with pytest.raises(ParallelError, match="killed by signal 9"):
        map_ranges(dies, 4000, 1, workers=2, inline_below=0)
    with pytest.raises(ParallelError, match="ArithmeticError: boom"):
        map_ranges(raises, 4000, 1, workers=2, inline_below=0)
    with pytest.raises(ParallelError, match="returned 3 bytes"):
        map_ranges(lambda s, e: b"abc", 4000, 1, workers=2, inline_below=0)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every worker was reaped


# --- the protocol ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("make", [random_sets, unicode_sets])
def test_both_mode_matches_set_intersection(seed: int, make) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    n_a, n_b = rng.randint(50, 400), rng.randint(50, 400)
    a, b = make(seed, n_a, n_b, rng.randint(1, min(n_a, n_b)))
    parties, transport = federation({"bank": a, "payments": b})
    outcome = run_psi(transport, "run-1", "bank", "payments", "both")
    expected = {norm(s) for s in a} & {norm(s) for s in b}
    ra, rb = parties["bank"].rows["payments"], parties["payments"].rows["bank"]
    assert {norm(a[i]) for i in ra} == expected and len(ra) == len(expected)
    assert [norm(a[i]) for i in ra] == [norm(b[j]) for j in rb]  # one agreed order
    assert outcome.cardinality == len(expected) == parties["payments"].cardinality["bank"]
    assert outcome.sizes == {"bank": n_a, "payments": n_b}
    assert outcome.parties == ("bank", "payments") and outcome.reveals == MODE_REVEALS["both"]
    assert parties["bank"]._sessions == {} and parties["payments"]._sessions == {}  # scalars dropped


def test_label_holder_mode_only_a_learns_rows() -> None:
    a, b = unicode_sets(5, 300, 200, 77)
    parties, transport = federation({"bank": a, "payments": b})
    outcome = run_psi(transport, "run-1", "bank", "payments", "label_holder")
    expected = {norm(s) for s in a} & {norm(s) for s in b}
    assert {norm(a[i]) for i in parties["bank"].rows["payments"]} == expected
    assert parties["payments"].rows == {} and parties["payments"].cardinality == {}
    assert parties["payments"].peer_sizes == {"bank": 300}
    assert outcome.cardinality is None and outcome.sizes == {"bank": 300, "payments": 200}


def test_cardinality_mode_only_a_learns_the_count() -> None:
    a, b = random_sets(6, 250, 300, 42)
    parties, transport = federation({"bank": a, "payments": b})
    outcome = run_psi(transport, "run-1", "bank", "payments", "cardinality")
    assert parties["bank"].cardinality == {"payments": 42}
    assert parties["bank"].rows == {} and parties["payments"].rows == {} and parties["payments"].cardinality == {}
    assert outcome.cardinality is None


def test_cardinality_mode_zero_overlap_is_an_answer() -> None:
    parties, transport = federation({"bank": [f"BR{i:08d}" for i in range(100)],
                                     "payments": [f"BR{i:08d}" for i in range(100, 200)]})
    run_psi(transport, "run-1", "bank", "payments", "cardinality")
    assert parties["bank"].cardinality == {"payments": 0}


def test_medium_sets_use_the_parallel_path() -> None:
    a, b = random_sets(9, 20_000, 20_000, 10_000)
    parties, transport = federation({"bank": a, "payments": b}, workers=2)
    outcome = run_psi(transport, "run-1", "bank", "payments", "both")
    ra, rb = parties["bank"].rows["payments"], parties["payments"].rows["bank"]
    assert outcome.cardinality == 10_000 == len(set(a) & set(b))
    assert np.array_equal(np.array(a, dtype=object)[ra], np.array(b, dtype=object)[rb])


def test_three_party_alignment() -> None:
    rng = random.Random(11)
    universe = [f"CU{i:07d}" for i in rng.sample(range(10**6), 900)]
    ids = {name: rng.sample(universe, k) for name, k in (("bank", 600), ("payments", 500), ("telco", 550))}
    ids["telco"] = [f" {unicodedata.normalize('NFD', s)} " for s in ids["telco"]]
    parties, transport = federation(ids)
    outcome = align(transport, "run-1", "bank", ["payments", "telco"])
    common = set(ids["bank"]) & set(ids["payments"]) & {norm(s) for s in ids["telco"]}
    assert outcome.n_aligned == len(common) > 0
    rows = {name: parties[name].aligned_rows for name in ids}
    assert all(r is not None and len(r) == len(common) for r in rows.values())
    for i in range(len(common)):
        assert len({norm(ids[name][rows[name][i]]) for name in ids}) == 1  # row i: one customer everywhere
    assert {norm(ids["bank"][r]) for r in rows["bank"]} == common
    assert outcome.cardinalities == {"payments": len(set(ids["bank"]) & set(ids["payments"])),
                                     "telco": len(set(ids["bank"]) & {norm(s) for s in ids["telco"]})}
    assert outcome.sizes == {"bank": 600, "payments": 500, "telco": 550}
    assert "learns its pairwise intersection" in outcome.reveals


# --- what crosses the party boundary --------------------------------------------------------------

def test_no_id_travels_in_clear() -> None:
    a, b = unicode_sets(21, 200, 150, 60)
    c = [norm(s) for s in random.Random(22).sample(a, 120)] + [f"Zoé-客户{i:07d}" for i in range(30)]
    log: list[tuple[Message, bytes]] = []
    parties, transport = federation({"bank": a, "payments": b, "telco": c}, record=log)
    for mode in MODES:
        run_psi(transport, "run-1", "bank", "payments", mode)
    align(transport, "run-1", "bank", ["payments", "telco"])
    blob = b"\n".join(raw for _, raw in log)
    needles = {form.encode() for s in a + b + c for form in (s, norm(s), unicodedata.normalize("NFD", norm(s)))}
    assert not [n for n in needles if n in blob]
    for message, _ in log:  # only sealed envelopes travel; the coordinator sees sizes, not points
        assert all(name.startswith("envelope") for name in message.arrays), message.kind
    finishes = [m for m, _ in log if m.kind == "psi.finish" and m.sender == "bank"]
    assert [("cardinality" in m.meta) for m in finishes] == [True, False, False, True, True]


# --- errors name parties, never ids -----------------------------------------------------------------

def _fails(ids: dict[str, list[str]], mode: str = "both") -> PartyError:
    _, transport = federation(ids)
    with pytest.raises(PartyError) as info:
        run_psi(transport, "run-1", "bank", "payments", mode)
    err = info.value
    assert err.error_type == "PsiError"
    for s in ids["bank"] + ids["payments"]:
        assert not isinstance(s, str) or not norm(s) or norm(s) not in str(err)
    return err


def test_duplicate_ids() -> None:
    bank = [f"BR{i:08d}" for i in range(50)] + ["BR00000007", " BR00000009 ", "BR00000007"]
    err = _fails({"bank": bank, "payments": [f"BR{i:08d}" for i in range(20)]})
    assert err.party == "bank" and "duplicate customer ids" in err.error
    assert "50" not in err.error and "3 " not in err.error  # no row number, no count: those stay in the local log


def test_empty_and_blank_ids() -> None:
    err = _fails({"bank": ["BR00000001"], "payments": []})
    assert err.party == "payments" and "no customer ids" in err.error
    err = _fails({"bank": ["BR00000001", "  ", "BR00000002"], "payments": ["BR00000001"]})
    assert err.party == "bank" and "empty customer ids" in err.error and "row 1" not in err.error


def test_no_overlap() -> None:
    ids = {"bank": [f"BR{i:08d}" for i in range(40)], "payments": [f"BR{i:08d}" for i in range(40, 90)]}
    for mode in ("both", "label_holder"):
        err = _fails(ids, mode)
        assert "no common customers between 'bank' and 'payments'" in err.error


def test_mismatched_id_formats() -> None:
    err = _fails({"bank": [f"BR{i:08d}" for i in range(40)], "payments": [f"{i:08d}" for i in range(40)]})
    assert err.party == "payments"
    assert "'bank' ids look like 'AA99999999'" in err.error and "'payments' ids look like '99999999'" in err.error
    _, transport = federation({"bank": [f"BR{i:08d}" for i in range(40)], "payments": [f"{i:08d}" for i in range(40)]})
    with pytest.raises(PartyError, match="no common customers"):  # the check can be waived
        run_psi(transport, "run-1", "bank", "payments", check_format=False)


def test_non_string_id() -> None:
    err = _fails({"bank": ["BR00000001", 17], "payments": ["BR00000001"]})  # type: ignore[list-item]
    assert "not a string" in err.error and "row 1" not in err.error


def test_mode_reveals_cover_every_mode() -> None:
    assert set(MODE_REVEALS) == set(MODES)
    assert "only the two set sizes" in MODE_REVEALS["label_holder"]
    with pytest.raises(ValueError):
        run_psi(InProcessTransport({}), "r", "a", "b", "everything")


def test_private_scalars_are_valid_x25519_keys() -> None:
    assert isinstance(psi_party._new_scalar(), X25519PrivateKey)
