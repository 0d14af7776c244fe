"""Finding 3: a coordinator must not be able to unmask one bank's update by asking twice under one label.

The coordinator of these tests is malicious: after an honest attempt it replays the unmasking (and the
consistency round) naming a survivor v as dropped, restarts parties, asks for a second masked input
under the same keys, or tells different parties different survivor sets. With both v's self-mask seed
b_v (from the survivors' view) and its mask key s_v (from the dropped view) it would read v's input.
Every such request is refused by the parties, also after a restart; the old code answered each one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from _secagg_coordinator import RUN, Consortium, drive, server

from sampan.crypto.identity import IdentityError
from sampan.privacy.secagg import SecAggRefused, decode_vector, run_secagg
from sampan.privacy.secagg.state import FileStateStore

VICTIM = "p4"


def _as_dropped(requests: dict, victim: str) -> dict:
    """The honest unmask requests, rewritten to name `victim` a dropout (so each neighbour would reveal s_victim)."""
    forged = {}
    for party, (arrays, meta) in requests.items():
        if party == victim:
            continue
        meta = {**meta, "survivors": [p for p in meta["survivors"] if p != victim]}
        forged[party] = (dict(arrays), meta)
    return forged


def test_second_unmask_naming_a_survivor_dropped_is_refused(tmp_path: Path) -> None:
    c = Consortium(5, tmp_path)
    srv = server(c)
    sent = drive(srv, c)  # honest attempt: every neighbour reveals its share of b_victim
    np.testing.assert_array_equal(srv.result(), c.expected(c.names, srv.params))
    b_shares = [reply for reply in srv.st.shares.values() if f"b.{VICTIM}" in reply]
    assert len(b_shares) == 4
    # the attack: the same label again, now "victim dropped": each neighbour should reveal s_victim
    s_shares = []
    for party, (arrays, meta) in _as_dropped(sent["secagg_unmask"], VICTIM).items():
        with pytest.raises(SecAggRefused, match="differs from the one it signed"):
            s_shares.append(c.call("secagg_unmask", party, arrays, meta))
    # nor will any of them sign the second survivor set needed to make that request consistent
    for party, (arrays, meta) in sent["secagg_consistency"].items():
        if party == VICTIM:
            continue
        with pytest.raises(SecAggRefused, match="already signed a different survivor set"):
            c.call("secagg_consistency", party, arrays, {**meta, "survivors": [p for p in c.names if p != VICTIM]})
    assert s_shares == []  # the coordinator holds b_victim's shares only: the pairwise masks still hide x_victim


def test_a_restarted_party_still_refuses(tmp_path: Path) -> None:
    c = Consortium(5, tmp_path)
    srv = server(c)
    sent = drive(srv, c)
    srv.result()
    for party in c.names:  # new processes: same master secret, same state folder, empty memory
        c.restart(party)
    for party, (arrays, meta) in _as_dropped(sent["secagg_unmask"], VICTIM).items():
        with pytest.raises(SecAggRefused):
            c.call("secagg_unmask", party, arrays, meta)
    state = FileStateStore(tmp_path / "p0").load(srv.label)
    assert state is not None and state.revealed == {p: "b" for p in c.names if p != "p0"}
    for path in (tmp_path / "p0").iterdir():  # the record is private to the party's OS user
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "p0").stat().st_mode) == 0o700


def test_masking_a_second_input_under_one_label_is_refused(tmp_path: Path) -> None:
    """Two masked inputs under the same masks give their difference (e.g. two DP noise draws) in clear."""
    c = Consortium(4, tmp_path)
    srv = server(c)
    sent = drive(srv, c, until="secagg_consistency")
    arrays, meta = sent["fit"]["p1"]
    first = srv.st.masked["p1"]
    np.testing.assert_array_equal(c.call("fit", "p1", arrays, meta)["masked"], first)  # a transport retry: same bytes
    c.restart("p1")  # the reply cache is gone, the record is not
    with pytest.raises(SecAggRefused, match="already masked an input"):
        c.call("fit", "p1", arrays, meta, vector=c.x["p1"] + 1.0)


def test_different_survivor_sets_for_different_parties_are_detected(tmp_path: Path) -> None:
    """Bonawitz et al.'s consistency round: a party reveals nothing unless enough parties signed its survivor set."""
    c = Consortium(5, tmp_path)
    srv = server(c)
    sent = drive(srv, c, until="secagg_consistency")
    told_dropped = [p for p in c.names if p != VICTIM]
    split = {"p0": c.names, "p1": c.names, VICTIM: c.names, "p2": told_dropped, "p3": told_dropped}
    signatures = {}
    for party, (arrays, meta) in srv.consistency_requests().items():
        signatures[party] = c.call("secagg_consistency", party, arrays, {**meta, "survivors": split[party]})
        srv.receive_signature(party, signatures[party])
    requests = srv.unmask_requests()  # built for the honest U3 (all five), with every neighbour's signature
    for party in ("p2", "p3"):  # told VICTIM dropped: would reveal s_VICTIM
        arrays, meta = requests[party]
        forged = {**meta, "survivors": told_dropped}
        # (a) it forwards the signatures of the forged set's other members: p0 and p1 signed another set
        others = [p for p in told_dropped if p != party]
        with pytest.raises(IdentityError, match="bad_signature") as caught:
            c.call("secagg_unmask", party, {**arrays, **_signers(signatures, others)}, {**forged, "signers": others})
        assert caught.value.peer in ("p0", "p1")
        with pytest.raises(SecAggRefused, match="not other survivors"):  # or every signature, the victim's too
            c.call("secagg_unmask", party, arrays, forged)
        # (b) it forwards only the signature over the forged set: one neighbour, three (a majority) needed
        (mate,) = [p for p in ("p2", "p3") if p != party]
        with pytest.raises(SecAggRefused, match="only 1 of its neighbours signed the survivor set, 3 needed"):
            c.call("secagg_unmask", party, {**arrays, **_signers(signatures, [mate])}, {**forged, "signers": [mate]})
        assert FileStateStore(tmp_path / party).load(srv.label).revealed == {}  # nothing left the party
    assert sent["secagg_keys"]  # (the attack ran on a real attempt)


def _signers(signatures: dict[str, dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """The unmask request's signature arrays for `names` (neighbours: their certificates travel with their keys)."""
    rows = [signatures[p]["signature"].tobytes() for p in names]
    return {"signers.signature": np.frombuffer(b"".join(rows), dtype=np.uint8).copy(),
            "signers.signature_len": np.array([len(r) for r in rows], dtype=np.int64),
            "signers.certificate": np.zeros(0, dtype=np.uint8), "signers.certificate_len": np.zeros(0, dtype=np.int64)}


def test_a_relabelled_request_is_refused_and_keys_never_repeat_for_a_label(tmp_path: Path) -> None:
    """A label names its run; the same label asked of a party with lost state (or of a fresh process) gets
    fresh keys from a fresh nonce, so secrets derived under a repeated label never repeat."""
    c = Consortium(4, tmp_path)
    label = f"{RUN}/round-1/attempt-0"
    first = c.clients["p0"].respond("secagg_keys", {}, {"label": label}, run_id=RUN)
    again = c.clients["p0"].respond("secagg_keys", {}, {"label": label}, run_id=RUN)
    np.testing.assert_array_equal(first["c_pk"], again["c_pk"])  # idempotent while the party keeps its record
    elsewhere = FileStateStore(tmp_path / "other")
    from sampan.privacy.secagg import SecAggClient
    other = SecAggClient("p0", c.masters["p0"], identity=c.identities["p0"], verifier=c.verifier, state=elsewhere)
    fresh = other.respond("secagg_keys", {}, {"label": label}, run_id=RUN)
    assert bytes(fresh["c_pk"]) != bytes(first["c_pk"]) and bytes(fresh["s_pk"]) != bytes(first["s_pk"])
    with pytest.raises(SecAggRefused, match="does not belong to run"):
        c.clients["p0"].respond("secagg_keys", {}, {"label": "another-run/round-1/attempt-0"}, run_id=RUN)


def test_honest_attempts_still_sum_exactly_with_dropouts(tmp_path: Path) -> None:
    c = Consortium(6, tmp_path)
    srv = server(c)

    def call(kind, party, arrays, meta):  # type: ignore[no-untyped-def]
        if (party, kind) in {("p1", "fit"), ("p5", "secagg_unmask")}:
            return None
        return c.call(kind, party, arrays, meta)

    total = run_secagg(srv, call)
    in_sum = [p for p in c.names if p != "p1"]
    np.testing.assert_array_equal(total, c.expected(in_sum, srv.params))
    np.testing.assert_allclose(decode_vector(total, srv.params), sum(c.x[p] for p in in_sum), atol=1e-8)
    summary = srv.summary()
    assert summary["dropped_before_masking"] == ["p1"] and summary["dropped_after_masking"] == ["p5"]
    assert os.listdir(tmp_path / "p0")


def test_a_minority_survivor_set_is_refused_even_with_a_lowered_minimum(tmp_path: Path) -> None:
    """The coordinator splits 7 parties into 4 told U3 and 3 told U3 minus p3, and claims only 3 signatures are
    needed: each of the 3 holds 2 neighbour signatures over its set, fewer than its own majority threshold (4)."""
    c = Consortium(7, tmp_path)
    srv = server(c)
    drive(srv, c, until="secagg_consistency")
    minority, forged = ["p4", "p5", "p6"], [p for p in c.names if p != "p3"]
    for party, (arrays, meta) in srv.consistency_requests().items():
        srv.receive_signature(party, c.call("secagg_consistency", party, arrays,
                                            {**meta, "survivors": forged if party in minority else c.names}))
    requests = srv.unmask_requests()
    signatures = {p: {"signature": np.frombuffer(srv.st.signatures[p], dtype=np.uint8)} for p in c.names}
    for party in minority:
        arrays, meta = requests[party]
        mates = [p for p in minority if p != party]
        with pytest.raises(SecAggRefused, match="only 2 of its neighbours signed the survivor set, 4 needed"):
            c.call("secagg_unmask", party, {**arrays, **_signers(signatures, mates)},
                   {**meta, "survivors": forged, "signers": mates, "certified": [], "min_live": 3})
        assert FileStateStore(tmp_path / party).load(srv.label).revealed == {}
