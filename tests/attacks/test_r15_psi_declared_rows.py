"""R15-PSI-3: a PSI inbox must not allocate whatever row totals the peer's first part declares.

Attack (a malicious label holder; the coordinator relays honestly): after the sealed psi.offer announced |A| = 50,
the label holder seals a psi.blind part 0 whose meta declares rows {"points": 2^24, "peer_points": 2^24} (and
could name any number of arrays, each up to `psi_parts.MAX_ROWS` = 2^31 rows, 64 GiB). The partner's
`Inbox.start` used to allocate each declared array (np.empty) before any check: 1 GiB of address space for a
50 x 40 run, and at 2^31 rows a MemoryError naming no party.

Safe behaviour asserted here: the partner already knows both totals (|A| from the sealed offer, |B| its own), so
a first part declaring other totals, or other arrays, is refused with a PsiError naming the party before
anything is allocated (no inbox is left behind); the label holder likewise refuses a psi.respond part whose
total is not its own set's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.wire import Message
from tests.test_psi import federation, random_sets

META = {"mode": "both", "check_format": True}


def _up_to_blind() -> tuple[dict[str, Any], Any]:
    a, b = random_sets(11, 50, 40, 15)
    parties, transport = federation({"bank": a, "payments": b})
    offer = next(transport.exchange([Message("r", 0, "coordinator", "bank", "psi.offer",
                                             meta={**META, "peer": "payments"})]))
    next(transport.exchange([Message("r", 0, "coordinator", "payments", "psi.accept",
                                     {"envelope": offer.arrays["envelope"]}, {**META, "peer": "bank"})]))
    return parties, transport


def _forge(parties: dict[str, Any], rows: dict[str, int], parts: int = 2) -> np.ndarray:
    points = np.zeros((8, 32), dtype=np.uint8)
    forged = Message("run-1", 0, "bank", "payments", "psi.blind", {name: points for name in rows},
                     {"n": 50, "part": 0, "parts": parts, "rows": rows, "payload": "0123456789abcdef"})
    return parties["bank"].channels.seal("payments", forged)  # type: ignore[no-any-return]


@pytest.mark.parametrize("rows", [
    {"points": 1 << 24, "peer_points": 1 << 24},  # 512 MiB per array of address space at the partner
    {"points": 50, "peer_points": 41},  # one row off the partner's own set
    {"points": 50, "peer_points": 40, "extra": 1 << 20},  # an array the step does not carry
    {"points": 50},  # mode both needs the partner's points back
])
@pytest.mark.parametrize("kind", ["psi.part", "psi.respond"])  # a first part of many, or a whole payload
def test_first_part_with_lying_row_totals_is_refused(rows: dict[str, int], kind: str) -> None:
    parties, transport = _up_to_blind()
    envelope = _forge(parties, rows, parts=2 if kind == "psi.part" else 1)
    with pytest.raises(PartyError) as info:
        next(transport.exchange([Message("r", 0, "coordinator", "payments", kind, {"envelope": envelope},
                                         {**META, "peer": "bank"})]))
    assert info.value.error_type == "PsiError"
    assert "'payments'" in str(info.value) and "disagree with the set sizes" in str(info.value)
    assert not parties["payments"]._inbox  # nothing allocated, nothing held


def test_the_label_holder_refuses_a_respond_of_another_size() -> None:
    parties, transport = _up_to_blind()
    bank = parties["bank"]
    points = np.zeros((8, 32), dtype=np.uint8)
    bank._sessions["payments"].perm = np.arange(50)
    forged = Message("run-1", 0, "payments", "bank", "psi.respond", {"points": points},
                     {"part": 0, "parts": 2, "rows": {"points": 1 << 24}, "payload": "0123456789abcdef"})
    envelope = parties["payments"].channels.seal("bank", forged)
    with pytest.raises(PartyError) as info:
        next(transport.exchange([Message("r", 0, "coordinator", "bank", "psi.part", {"envelope": envelope},
                                         {**META, "peer": "payments"})]))
    assert info.value.error_type == "PsiError" and "disagree with the set sizes" in str(info.value)
    assert not bank._inbox
