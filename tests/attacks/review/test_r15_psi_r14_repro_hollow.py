"""R15-PSI-2: the R14-CHECKS-6 repro (per-id keys in cardinality mode) no longer runs its attack.

T2 changed `PsiParty._prepare()` from the tuple ``(norm, encoded, shape)`` to a `CompactIds` object. The strict
xfail `tests/attacks/review/test_r14_checks_psi_card_per_id_keys.py` unpacks the tuple inside its malicious
label holder, so it now dies at psi.blind with "TypeError: cannot unpack non-iterable CompactIds object" before
any point is blinded. Strict xfail still passes (any exception counts as failing), so the suite stays green
while the documented limitation it tracks (a label holder blinding each id with its own key names the
matching ids) is no longer exercised: a fix or a regression would go unnoticed.

Expected: the repro reaches its assertion, i.e. it fails with the AssertionError of the attack succeeding
("the label holder named ...% of its ids' membership correctly"). What happens: PartyError(TypeError).
"""

from __future__ import annotations

import pytest

from sampan.core.transport import PartyError
from tests.attacks.review import test_r14_checks_psi_card_per_id_keys as r14


@pytest.mark.xfail(strict=True, raises=PartyError, reason="R15-PSI-2: the R14-CHECKS-6 repro fails on a TypeError "
                   "from _prepare()'s new return type, not on its attack")
def test_r14_checks6_repro_still_runs_its_attack() -> None:
    with pytest.raises(AssertionError, match="membership correctly"):
        r14.test_the_label_holder_cannot_name_the_matching_ids_in_cardinality_mode()
