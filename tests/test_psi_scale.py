"""PSI at scale: compact ids equal the per-item rule, payloads in bounded sealed parts, memory per id bounded."""

from __future__ import annotations

import random
import tracemalloc
import unicodedata

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.vertical import psi_points
from sampan.vertical.psi import MODES, align, run_psi
from sampan.vertical.psi_ids import compact_ids, normalise_ids
from sampan.vertical.psi_party import _new_scalar
from sampan.vertical.psi_points import PsiError
from sampan.wire import Message
from tests.test_psi import federation, norm, random_sets, unicode_sets


def _old_rule(ids: list[str]) -> list[bytes]:
    """The per-item rule before compaction: NFC, strip, UTF-8."""
    return [unicodedata.normalize("NFC", s).strip().encode() for s in ids]


# --- compact ids ------------------------------------------------------------------------------------------

def test_compact_ids_equal_the_per_item_rule() -> None:
    a, b = unicode_sets(3, 300, 300, 100)
    mine = {norm(s) for s in a}
    extra = ["BR00000001", "x y", "\tTAB1", "ZZ\x1f9", "e\u0301clair", "ﬁ-1", "Ω", " 7 "]
    mixed = a + [s for s in b if norm(s) not in mine] + extra
    for given in (mixed, np.array(mixed, dtype=object), np.array(mixed)):
        compact = compact_ids(given, "bank")
        assert compact.ids.tolist() == _old_rule(mixed)
    assert normalise_ids(mixed, "bank")[1] == _old_rule(mixed)


def test_compact_ids_from_bytes_and_arrow() -> None:
    pa = pytest.importorskip("pyarrow")
    ids = [f"BR{i:08d}" for i in range(50)] + ["Zoé-客户1"]
    assert compact_ids(pa.array(ids), "bank").ids.tolist() == _old_rule(ids)
    assert compact_ids(np.array([s.encode() for s in ids]), "bank").ids.tolist() == _old_rule(ids)
    with pytest.raises(PsiError, match="not valid UTF-8"):
        compact_ids(np.array([b"\xff\xfe"]), "bank")


def test_shape_of_compact_ids() -> None:
    assert compact_ids([f"BR{i:08d}" for i in range(9)] + ["X1"], "b").shape == "AA99999999"
    assert compact_ids(["客户-0012", "客户-0013"], "b").shape == "AA-9999"
    assert compact_ids(["--", "++"], "b").shape == "??"
    assert compact_ids(["a1", "b2", "333", "444"], "b").shape == "A9"  # ties: the first seen, like Counter


@pytest.mark.parametrize("ids, why", [
    (["BR1", "BR2", " BR1"], "duplicate customer ids"),  # a fast-path row and a slow-path row collide
    (["e\u0301", "é"], "duplicate customer ids"),  # equal only after NFC
    ([], "no customer ids"),
    (["BR1", "   "], "empty customer ids"),
    (["BR1", ""], "empty customer ids"),
    (["BR1", "BR\x002"], "NUL character"),
    (["BR1", "BR2\x00"], "NUL character"),  # a trailing NUL, which a numpy string array would drop
    (["BR1", 7], "not a string"),
    (np.arange(3), "not a string"),
    (["BR1", "\ud800"], "not valid Unicode"),
])
def test_compact_ids_errors_are_clear(ids: object, why: str) -> None:
    with pytest.raises(PsiError, match=why) as info:
        compact_ids(ids, "bank")
    assert "'bank'" in str(info.value) and "BR1" not in str(info.value)


def test_duplicate_check_is_exact_on_key_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampan.vertical import psi_ids

    monkeypatch.setattr(psi_ids, "_row_keys", lambda ids: np.zeros(len(ids), np.uint64))  # every key collides
    compact_ids([f"BR{i:04d}" for i in range(100)], "bank")  # distinct ids pass
    with pytest.raises(PsiError, match="duplicate"):
        compact_ids(["A1", "B2", "C3", "B2"], "bank")


def test_compact_ids_memory_is_bounded_per_id() -> None:
    n = 200_000
    ids = np.array([f"BR{i:08d}" for i in range(n)])  # U10: what a loaded column gives
    tracemalloc.start()
    try:
        compact = compact_ids(ids, "bank")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert compact.ids.dtype == np.dtype("S10") and len(compact) == n
    # 10 bytes kept per id; the transient work (keys, sort order, shape table) stays a small multiple of that.
    assert peak < 100 * n, f"{peak / n:.0f} bytes per id"


# --- blinding in blocks -----------------------------------------------------------------------------------

def test_blinding_in_blocks_equals_one_block() -> None:
    ids = compact_ids([f"CU{i:05d}" for i in range(300)], "bank").ids
    extra = psi_points.hash_to_curve([b"p%d" % i for i in range(70)])
    key = _new_scalar()
    whole = psi_points._hash_and_blind(ids, key, 1, extra)
    for block in (1, 7, 299, 301, 1000):
        parts = psi_points._hash_and_blind(ids, key, 1, extra, block=block)
        assert all(np.array_equal(x, y) for x, y in zip(whole, parts, strict=True))
    assert np.array_equal(whole[0], psi_points._hash_and_blind(ids.tolist(), key, 1)[0])


# --- the protocol in parts --------------------------------------------------------------------------------

class Recorder:
    def __init__(self, app: object, log: list[Message]) -> None:
        self.app, self.log = app, log
        self.name = app.name  # type: ignore[attr-defined]

    def handle(self, message: Message) -> Message:
        self.log.append(message)
        reply = self.app.handle(message)  # type: ignore[attr-defined]
        self.log.append(reply)
        return reply


@pytest.mark.parametrize("part_rows", [1, 7, 10_000])
@pytest.mark.parametrize("mode", MODES)
def test_parts_give_the_same_result_in_every_mode(part_rows: int, mode: str) -> None:
    a, b = random_sets(part_rows, 60, 45, 20)
    parties, transport = federation({"bank": a, "payments": b})
    for p in parties.values():
        p.part_rows = part_rows
    log: list[Message] = []
    transport._apps = {k: Recorder(v, log) for k, v in transport._apps.items()}  # type: ignore[attr-defined]
    outcome = run_psi(transport, "run-1", "bank", "payments", mode)
    expected = set(a) & set(b)
    bank = parties["bank"]
    if mode == "cardinality":
        assert bank.cardinality == {"payments": 20} and bank.rows == {}
    else:
        assert {a[i] for i in bank.rows["payments"]} == expected
    if mode == "both":
        rb = parties["payments"].rows["bank"]
        assert [a[i] for i in bank.rows["payments"]] == [b[j] for j in rb]
        assert outcome.cardinality == 20
    kinds = [m.kind for m in log]
    if part_rows >= 60:
        assert "psi.part" not in kinds and "psi.pull" not in kinds  # one part: the messages are as before
    else:
        assert kinds.count("psi.part") > 0 and kinds.count("psi.pull") > 0
    # Every envelope stays within one part's points (plus the seal and the frame).
    biggest = max(m.arrays["envelope"].size for m in log if "envelope" in m.arrays)
    assert biggest <= 2 * 32 * min(part_rows, 60) + 1024
    for p in parties.values():
        assert p._inbox == {} and p._outbox == {} and p._sessions == {}


def test_parts_then_alignment() -> None:
    rng = random.Random(5)
    universe = [f"CU{i:07d}" for i in rng.sample(range(10**6), 300)]
    ids = {name: rng.sample(universe, k) for name, k in (("bank", 200), ("payments", 150), ("telco", 180))}
    parties, transport = federation(ids)
    for p in parties.values():
        p.part_rows = 13
    outcome = align(transport, "run-1", "bank", ["payments", "telco"])
    common = set(ids["bank"]) & set(ids["payments"]) & set(ids["telco"])
    assert outcome.n_aligned == len(common)
    rows = {name: parties[name].aligned_rows for name in ids}
    for i in range(len(common)):
        assert len({ids[name][rows[name][i]] for name in ids}) == 1  # type: ignore[index]


def test_unicode_ids_in_parts() -> None:
    a, b = unicode_sets(8, 90, 70, 30)
    parties, transport = federation({"bank": a, "payments": b})
    for p in parties.values():
        p.part_rows = 16
    run_psi(transport, "run-1", "bank", "payments", "both")
    ra, rb = parties["bank"].rows["payments"], parties["payments"].rows["bank"]
    assert [norm(a[i]) for i in ra] == [norm(b[j]) for j in rb] and len(ra) == 30


def test_errors_stay_clear_with_parts() -> None:
    parties, transport = federation({"bank": ["BR00000001", "BR00000001"], "payments": ["BR00000001"]})
    with pytest.raises(PartyError, match="duplicate customer ids"):
        run_psi(transport, "run-1", "bank", "payments")
    parties, transport = federation({"bank": [f"BR{i:08d}" for i in range(30)],
                                     "payments": [f"BR{i:08d}" for i in range(30, 60)]})
    for p in parties.values():
        p.part_rows = 4
    with pytest.raises(PartyError, match="no common customers"):
        run_psi(transport, "run-1", "bank", "payments")


def test_arrow_ids_are_converted_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    pa = pytest.importorskip("pyarrow")
    from sampan.vertical import psi_ids

    monkeypatch.setattr(psi_ids, "BLOCK", 7)
    ids = [f"BR{i:08d}" for i in range(40)] + [" Zoé-客户1 "]
    chunked = pa.chunked_array([ids[:20], ids[20:]])
    assert compact_ids(chunked, "bank").ids.tolist() == _old_rule(ids)
    assert compact_ids(pa.array(ids, pa.large_string()), "bank").ids.tolist() == _old_rule(ids)
    with pytest.raises(PsiError, match="not a string"):
        compact_ids(pa.array([1, 2]), "bank")
    with pytest.raises(PsiError, match="not a string"):
        compact_ids(pa.array(["BR1", None]), "bank")


def test_in_place_blinding_equals_a_copy() -> None:
    points = psi_points.hash_to_curve([b"q%d" % i for i in range(40)])
    key = _new_scalar()
    expected = psi_points.blind(points, key, workers=1)
    work = points.copy()
    out = psi_points._hash_and_blind(np.empty(0, "S1"), key, 1, work, block=7, in_place=True)[1]
    assert out is work and np.array_equal(work, expected)
    frozen = points.copy()
    frozen.flags.writeable = False  # a read-only array is never overwritten
    assert np.array_equal(psi_points.blind(frozen, key, workers=1, in_place=True), expected)
    assert np.array_equal(frozen, points)


def test_matching_memory_is_bounded_per_token() -> None:
    from sampan.vertical.psi_points import match_tokens

    rng = np.random.default_rng(2)
    n = 200_000
    x = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    y = np.concatenate([x[: n // 2], rng.integers(0, 256, (n // 2, 32), dtype=np.uint8)])[rng.permutation(n)]
    tracemalloc.start()
    try:
        ix, iy = match_tokens(x, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ix) == n // 2 and np.array_equal(x[ix], y[iy])
    keys = [bytes(t) for t in x[ix]]
    assert keys == sorted(keys)  # the canonical order both parties share
    assert peak < 64 * n, f"{peak / n:.0f} bytes per token"  # no copy of the 32-byte tokens


def test_deployed_parties_accept_the_part_kinds() -> None:
    """A deployed party answers psi.part / psi.pull wherever it answers the PSI steps (vertical and checks jobs)."""
    from sampan.checks.capability import PSI_STEPS
    from sampan.deploy.allow_checks import check_checks_request
    from sampan.deploy.allow_requests import VERTICAL_KINDS
    from sampan.deploy.allow_section import JobRefused

    assert {"psi.part", "psi.pull"} <= VERTICAL_KINDS and {"psi.part", "psi.pull"} <= set(PSI_STEPS)
    job = {"vertical": True}
    for kind in ("psi.part", "psi.pull"):
        check_checks_request("payments", kind, {"mode": "cardinality", "peer": "bank", "part": 1}, job)
        with pytest.raises(JobRefused):  # and, like every PSI step, only in mode cardinality there
            check_checks_request("payments", kind, {"mode": "both", "peer": "bank"}, job)
