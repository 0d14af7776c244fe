"""R12-SYN-1 (fixed): a malicious coordinator's coarsening map is no free membership oracle.

``synth.release`` with ``op = "clique"`` takes the coarsening maps of its axes from the request. The party
indexes them with its records' bin codes (``coarsen[codes]``) and counts with ``np.bincount`` BEFORE it
charges its ledger (`PartyMeasurer.clique` -> `_release`). A map that is too short for the axis (or holds a
negative group) raises only when some record falls in the uncovered bin, so the reply is a success (charged)
on D and an error reply (NOT charged) on D' = D plus one record in that bin: an uncharged, deterministic
predicate on the records ("does this bank hold any record in bin k"), repeatable without limit.
Fixed: the party checks every map against the axis's public size (length, groups in range) before it reads
a record, and charges before it counts; the crafted map is refused alike on D and D', an honest one answered
and charged alike.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.synth import protocol
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.party import synthesis_party_app
from sampan.synth.workflow import simulated_setups
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

LABEL = SME_SYNTH_SCHEMA.label


def _neighbours() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    table = next(iter(consortium_tables(600, seed=3).values()))
    labels = np.asarray(table[LABEL]).astype(str)
    negatives = {k: np.asarray(v)[labels == "0"] for k, v in table.items()}
    one_positive = np.flatnonzero(labels == "1")[:1]
    d_prime = {k: np.concatenate([negatives[k], np.asarray(table[k])[one_positive]]) for k in table}
    return negatives, d_prime


def _ask(table: dict[str, np.ndarray], cmap: np.ndarray = np.array([0], np.int64)) -> tuple[str, int]:
    """The coordinator's requests through the public transport; returns (outcome, releases charged)."""
    setups = simulated_setups({"bank": table}, epsilon=1.0, delta=1e-5, secure=False, schema=SME_SYNTH_SCHEMA)
    transport = InProcessTransport({"bank": synthesis_party_app(setups["bank"])})
    open_ = Message("run", 0, "coordinator", "bank", protocol.OPEN, {},
                    {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False, "parties": ["bank"]})
    list(transport.exchange([open_]))
    # the label axis "" has 2 classes; the map covers only class 0 (encoders {} sets the label codes)
    names, arrays = protocol.encode_axes([("", cmap)])
    request = Message("run", 1, "coordinator", "bank", protocol.RELEASE, arrays,
                      {"op": "clique", "sigma": 50.0, "axes": names, "encoders": {}})
    try:
        reply = list(transport.exchange([request]))[0]
        return "released", len(reply.meta["release"] and [reply.meta["release"]])
    except Exception as exc:  # the error reply: must not depend on the records
        return f"error: {exc}", 0


@pytest.mark.parametrize("cmap", [np.array([0], np.int64), np.array([0, -1], np.int64), np.array([0, 2], np.int64),
                                  np.array([[0, 1]], np.int64)], ids=["short", "negative", "out-of-range", "2-D"])
def test_clique_coarsening_map_is_not_an_uncharged_oracle(cmap: np.ndarray) -> None:
    d, d_prime = _neighbours()
    outcome_d, charged_d = _ask(d, cmap)
    outcome_dp, charged_dp = _ask(d_prime, cmap)
    # DP: a request must either be refused on its public content alone (the same on D and D'), or be charged
    assert (outcome_dp, charged_dp) == (outcome_d, charged_d), "the reply depends on one record, uncharged"
    assert outcome_d.startswith("error") and "coarsening map" in outcome_d  # refused on the map itself


def test_well_formed_coarsening_map_is_answered_and_charged_alike() -> None:
    d, d_prime = _neighbours()
    assert _ask(d, np.array([0, 0], np.int64)) == _ask(d_prime, np.array([0, 0], np.int64)) == ("released", 1)
