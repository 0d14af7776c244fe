"""R15-PSI-3: a PSI inbox allocates whatever row totals the peer's first part declares, unchecked against the sizes
the protocol already fixed.

Attack (a malicious label holder; the coordinator relays honestly): after the sealed psi.offer announced |A| = 50,
the label holder seals a psi.blind part 0 whose meta declares rows {"points": 2^24, "peer_points": 2^24} (and
could name any number of arrays, each up to `psi_parts.MAX_ROWS` = 2^31 rows, 64 GiB). The partner's
`Inbox.start` allocates each declared array (np.empty) before any check: here 1 GiB of address space for a
50 x 40 run; at 2^31 rows a MemoryError whose text names no party ("Unable to allocate 64.0 GiB ..."); on a
host with strict overcommit, memory the partner's other work then cannot get. The partner already knows both
totals (|A| from the sealed offer, |B| its own), so a first part declaring other totals could be refused at once.

Expected safe behaviour: the psi.part carrying that first part is refused with a PsiError naming the parties
(rows disagree with the offer / own set size) before anything is allocated. What happens: the part is
accepted (an empty ``psi.part`` reply) and the arrays stay allocated until the step ends or a new offer comes.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.wire import Message
from tests.test_psi import federation, random_sets


@pytest.mark.xfail(strict=True, reason="R15-PSI-3: a PSI inbox allocates the peer's declared row totals unchecked "
                   "against the sizes the offer and own set fixed")
def test_first_part_with_lying_row_totals_is_refused() -> None:
    a, b = random_sets(11, 50, 40, 15)
    parties, transport = federation({"bank": a, "payments": b})
    meta = {"mode": "both", "check_format": True}
    offer = next(transport.exchange([Message("r", 0, "coordinator", "bank", "psi.offer",
                                             meta={**meta, "peer": "payments"})]))
    next(transport.exchange([Message("r", 0, "coordinator", "payments", "psi.accept",
                                     {"envelope": offer.arrays["envelope"]}, {**meta, "peer": "bank"})]))
    huge = 1 << 24  # 512 MiB per array of address space at the partner
    points = np.zeros((8, 32), dtype=np.uint8)
    forged = Message("run-1", 0, "bank", "payments", "psi.blind", {"points": points, "peer_points": points},
                     {"n": 50, "part": 0, "parts": 2, "rows": {"points": huge, "peer_points": huge},
                      "payload": "0123456789abcdef"})
    envelope = parties["bank"].channels.seal("payments", forged)  # type: ignore[union-attr]
    with pytest.raises(PartyError) as info:
        next(transport.exchange([Message("r", 0, "coordinator", "payments", "psi.part", {"envelope": envelope},
                                         {**meta, "peer": "bank"})]))
    assert info.value.error_type == "PsiError"
