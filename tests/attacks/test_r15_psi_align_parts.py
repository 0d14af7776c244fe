"""R15-PSI-4: the alignment step must respect the parts bound, like every other PSI step.

Claim (`sampan.vertical.psi` docstring): points travel in sealed parts of at most 2^18 points (psi.part /
psi.pull): at most 8 MiB of points per array per message. `PsiParty._align` used to seal each partner's aligned
tokens whole (32 bytes per aligned id) and return ALL partners' envelopes in one ``psi.align`` reply: with a
bank of 10M customers, 8.4M aligned ids with one partner (or 4.2M with two) put that reply above a deployed
link's default 256 MB message cap, so star alignment failed at the scale the parts were built for.

Safe behaviour asserted here: ``psi.align`` answers counts only; each partner's tokens are pulled from the label
holder part by part and passed on (psi.part, the last with psi.aligned), so no psi.* message carries more than
one part's points per array (part_rows = 13: 2 x 32 x part_rows + 1 KiB); every party ends with the same
customers in the same order as with whole payloads; a part of the aligned tokens cannot declare more rows than
the partner's intersection with the label holder.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.vertical.psi import align
from sampan.wire import Message
from tests.test_psi import federation

PART_ROWS = 13


def _ids() -> dict[str, list[str]]:
    rng = random.Random(15)
    universe = [f"CU{i:07d}" for i in rng.sample(range(10**6), 260)]
    return {"bank": universe[:200], "payments": universe[:110] + universe[200:230],
            "telco": universe[:120] + universe[230:260]}


@pytest.mark.parametrize("part_rows", [PART_ROWS, 110, 1 << 18])  # many parts, exactly one, the default
def test_alignment_messages_stay_within_one_part(part_rows: int) -> None:
    ids = _ids()
    log: list[tuple[Message, bytes]] = []
    parties, transport = federation(ids, record=log)
    for p in parties.values():
        p.part_rows = part_rows
    outcome = align(transport, "run-1", "bank", ["payments", "telco"])
    assert outcome.n_aligned == 110
    bound = 2 * 32 * min(part_rows, 260) + 1024
    too_big = sorted({(m.kind, m.sender) for m, _ in log if m.kind.startswith("psi.")
                      and sum(a.size for a in m.arrays.values()) > bound})
    assert not too_big, f"messages above one part's points: {too_big}"
    customers = {name: [ids[name][r] for r in party.aligned_rows] for name, party in parties.items()}
    assert customers["bank"] == customers["payments"] == customers["telco"]
    assert set(customers["bank"]) == set(ids["bank"][:110])


def test_a_part_of_aligned_tokens_cannot_declare_more_than_the_intersection() -> None:
    ids = _ids()
    parties, transport = federation({k: ids[k] for k in ("bank", "payments")})
    align(transport, "run-1", "bank", ["payments"])
    points = np.zeros((8, 32), dtype=np.uint8)
    forged = Message("run-1", 0, "bank", "payments", "psi.align", {"tokens": points},
                     {"part": 0, "parts": 2, "rows": {"tokens": 1 << 24}, "payload": "0123456789abcdef"})
    envelope = parties["bank"].channels.seal("payments", forged)  # type: ignore[union-attr]
    with pytest.raises(PartyError) as info:
        next(transport.exchange([Message("r", 0, "coordinator", "payments", "psi.part", {"envelope": envelope},
                                         {"peer": "bank"})]))
    assert info.value.error_type == "PsiError" and "disagree with the set sizes" in str(info.value)
    assert not parties["payments"]._inbox
