"""Review (issue 12, federated synthesis over the transport): a malicious coordinator's free membership oracle.

``synth.release`` with ``op = "clique"`` takes the coarsening maps of its axes from the request. The party
indexes them with its records' bin codes (``coarsen[codes]``) and counts with ``np.bincount`` BEFORE it
charges its ledger (`PartyMeasurer.clique` -> `_release`). A map that is too short for the axis (or holds a
negative group) raises only when some record falls in the uncovered bin, so the reply is a success (charged)
on D and an error reply (NOT charged) on D' = D plus one record in that bin: an uncharged, deterministic
predicate on the records ("does this bank hold any record in bin k"), repeatable without limit.
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


def _ask(table: dict[str, np.ndarray]) -> tuple[str, int]:
    """The coordinator's requests through the public transport; returns (outcome, releases charged)."""
    setups = simulated_setups({"bank": table}, epsilon=1.0, delta=1e-5, secure=False, schema=SME_SYNTH_SCHEMA)
    transport = InProcessTransport({"bank": synthesis_party_app(setups["bank"])})
    open_ = Message("run", 0, "coordinator", "bank", protocol.OPEN, {},
                    {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False, "parties": ["bank"]})
    list(transport.exchange([open_]))
    # the label axis "" has 2 classes; the map covers only class 0 (encoders {} sets the label codes)
    names, arrays = protocol.encode_axes([("", np.array([0], np.int64))])
    request = Message("run", 1, "coordinator", "bank", protocol.RELEASE, arrays,
                      {"op": "clique", "sigma": 50.0, "axes": names, "encoders": {}})
    try:
        reply = list(transport.exchange([request]))[0]
        return "released", len(reply.meta["release"] and [reply.meta["release"]])
    except Exception:  # the error reply: a record is in the uncovered bin
        return "error", 0


@pytest.mark.xfail(strict=True, reason="R12-SYN-1: a malformed coarsening map turns synth.release into an "
                                       "uncharged membership oracle (error before the ledger charge)")
def test_clique_coarsening_map_is_not_an_uncharged_oracle() -> None:
    d, d_prime = _neighbours()
    outcome_d, charged_d = _ask(d)
    outcome_dp, charged_dp = _ask(d_prime)
    assert outcome_d == "released" and charged_d == 1  # on D the request is an ordinary, charged release
    # DP: a request must either be refused on its public content alone (the same on D and D'), or be charged;
    # here D' answers with an error that depends on the one extra record and costs nothing
    assert outcome_dp == outcome_d, "the reply's success/failure depends on one record, uncharged"
