"""R15-PSI-4: the alignment step ignores the parts bound: every partner's aligned tokens travel in ONE message.

Claim (`sampan.vertical.psi` docstring): "Every party-to-party payload is a SealedChannels envelope ...; points
travel as (n, 32) uint8 arrays, in sealed parts of at most 2^18 points (psi.part / psi.pull) when a payload is
larger: at most 8 MiB of points per array per message". `PsiParty._align` seals each partner's aligned tokens
whole (32 bytes per aligned id) and returns ALL partners' envelopes in one ``psi.align`` reply to the
coordinator. With a bank of 10M customers, 8.4M aligned ids with one partner, or 4.2M with two, put that reply
above a deployed link's default 256 MB message cap (`deploy/config.py` max_message_mb), so star alignment fails
at the scale the parts were built for, and the label holder holds partners x 32 bytes x aligned ids sealed at
once. docs/benchmarks.md states the one-message-per-partner limit, not that the label holder's reply sums them.

Expected: no psi.* message carries more than one part's points per array (here part_rows = 13: the bound the
T2 tests use, 2 x 32 x part_rows + 1 KiB). What happens: the psi.align reply carries ~2 x 110 x 32 bytes.
"""

from __future__ import annotations

import random

import pytest

from sampan.vertical.psi import align
from sampan.wire import Message
from tests.test_psi import federation

PART_ROWS = 13


@pytest.mark.xfail(strict=True, reason="R15-PSI-4: psi.align sends every partner's aligned tokens whole, in one "
                   "reply, above the parts bound")
def test_alignment_messages_stay_within_one_part() -> None:
    rng = random.Random(15)
    universe = [f"CU{i:07d}" for i in rng.sample(range(10**6), 260)]
    ids = {"bank": universe[:200], "payments": universe[:110] + universe[200:230],
           "telco": universe[:120] + universe[230:260]}
    log: list[tuple[Message, bytes]] = []
    parties, transport = federation(ids, record=log)
    for p in parties.values():
        p.part_rows = PART_ROWS
    outcome = align(transport, "run-1", "bank", ["payments", "telco"])
    assert outcome.n_aligned == 110
    bound = 2 * 32 * PART_ROWS + 1024
    too_big = sorted({(m.kind, m.sender) for m, _ in log if m.kind.startswith("psi.")
                      and sum(a.size for a in m.arrays.values()) > bound})
    assert not too_big, f"messages above one part's points: {too_big}"
