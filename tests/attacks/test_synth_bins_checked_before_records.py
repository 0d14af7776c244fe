"""R12-SYN-1b (fixed): coordinator-sent bin definitions are no free oracle.

The bin definitions (``encoders``) ride on any ``synth.*`` request and are decoded without checks
(`protocol.decode_encoders` -> `NumericBins`). Bins whose ``starts`` begin after fine cell 0 give code -1 to
a record in cell 0; ``np.bincount`` then raises, in ``synth.release`` (clique) and in ``synth.select_tree``
alike, BEFORE the party charges its ledger. So the reply (success and a charge, or an error and no charge)
depends on whether one record lies below a threshold the coordinator picks: an uncharged predicate on the
records, repeatable (a binary search finds the bank's minimum value for free).
Fixed: bins are checked against the public schema when they arrive (starts from 0 to the grid's cells,
strictly increasing; the grid rebuilt from the schema; category groups one per category, in range), and the
records are binned only after the release is charged; the crafted bins are refused alike on D and D'.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.synth import protocol
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.discretize import FineGrid, NumericBins
from sampan.synth.encoders import CategoryGroups
from sampan.synth.party import synthesis_party_app
from sampan.synth.workflow import simulated_setups
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

COLUMN, OTHER = "years_in_business", "has_guarantee"
GRID = FineGrid(0.0, 60.0, False, False, np.linspace(0.0, 60.0, 9), -1)  # 8 cells of 7.5 years
BINS = NumericBins(GRID, np.array([1, 4, 8], np.int64), np.ones(8))  # cell 0 (< 7.5 years) has no bin


def _neighbours() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    table = next(iter(consortium_tables(600, seed=7).values()))
    keep = np.asarray(table[COLUMN], np.float64) >= 7.5
    d = {k: np.asarray(v)[keep] for k, v in table.items()}
    extra = {k: v[:1].copy() for k, v in d.items()}
    extra[COLUMN] = np.full(1, 1.0, dtype=np.asarray(d[COLUMN]).dtype)
    return d, {k: np.concatenate([d[k], extra[k]]) for k in d}


def _ask(table: dict[str, np.ndarray], op: str, bins: NumericBins = BINS) -> tuple[str, int]:
    """Outcome of the crafted request, and how many releases the party recorded (charged) for it."""
    setups = simulated_setups({"bank": table}, epsilon=5.0, delta=1e-5, secure=False, schema=SME_SYNTH_SCHEMA)
    transport = InProcessTransport({"bank": synthesis_party_app(setups["bank"])})

    def send(step: int, kind: str, arrays: dict, meta: dict) -> Message:
        return list(transport.exchange([Message("run", step, "coordinator", "bank", kind, arrays, meta)]))[0]

    send(0, protocol.OPEN, {}, {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False, "parties": ["bank"]})
    send(1, protocol.RELEASE, {}, {"op": "label", "sigma": 50.0})  # tree selection needs the noisy row count
    other = CategoryGroups(SME_SYNTH_SCHEMA.column(OTHER), np.array([0, 1], np.int64), np.ones(2))
    enc_meta, enc_arrays = protocol.encode_encoders({COLUMN: bins, OTHER: other})
    try:
        if op == "clique":
            names, arrays = protocol.encode_axes([(COLUMN, None)])
            reply = send(2, protocol.RELEASE, {**enc_arrays, **arrays},
                         {"op": "clique", "sigma": 50.0, "axes": names, "encoders": enc_meta})
            return "released", 1
        keys, arrays = protocol.encode_baselines({(COLUMN, OTHER): np.full((2, 2), 0.25)})
        reply = send(2, protocol.SELECT_TREE, {**enc_arrays, **arrays},
                     {"features": [COLUMN, OTHER], "baselines": keys, "epsilon": 0.1, "encoders": enc_meta})
        return "released", len(reply.meta["releases"])
    except Exception as exc:  # the error reply: must not depend on the records
        return f"error: {exc}", 0


@pytest.mark.parametrize("crafted", ["reviewer", "public-grid-gap"])
@pytest.mark.parametrize("op", ["clique", "select_tree"])
def test_crafted_bins_are_not_an_uncharged_oracle(op: str, crafted: str) -> None:
    if crafted == "reviewer":  # the review's bins: on a grid of its own, cell 0 left out
        bins, why = BINS, "not the public fine grid"
    else:  # the public grid, but cell 0 in no bin
        public = FineGrid(*_public_grid_args())
        starts = np.array([1, 4, public.n_cells], np.int64)
        bins, why = NumericBins(public, starts, np.ones(public.n_cells)), "bin starts"
    d, d_prime = _neighbours()
    outcome_d, charged_d = _ask(d, op, bins)
    outcome_dp, charged_dp = _ask(d_prime, op, bins)
    assert (outcome_dp, charged_dp) == (outcome_d, charged_d), "one record flips the reply, and it is not charged"
    assert outcome_d.startswith("error") and why in outcome_d  # refused on the bins themselves


@pytest.mark.parametrize("op", ["clique", "select_tree"])
def test_public_bins_are_answered_and_charged_alike(op: str) -> None:
    d, d_prime = _neighbours()
    public = FineGrid(*_public_grid_args())
    bins = NumericBins(public, np.array([0, 4, public.n_cells], np.int64), np.ones(public.n_cells))
    outcome_d, charged_d = _ask(d, op, bins)
    assert (outcome_d, charged_d) == _ask(d_prime, op, bins)
    assert outcome_d == "released" and charged_d >= 1


def _public_grid_args() -> tuple:
    from sampan.synth.discretize import fine_grid

    g = fine_grid(SME_SYNTH_SCHEMA.column(COLUMN), 8)
    return g.lo, g.hi, g.integer, g.values_mode, g.edges, g.zero_index
