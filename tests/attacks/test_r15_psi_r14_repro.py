"""R15-PSI-2: the R14-CHECKS-6 repro (per-id keys in cardinality mode) keeps running its attack.

T2 changed `PsiParty._prepare()` from the tuple ``(norm, encoded, shape)`` to a `CompactIds` object, and PSI
payloads now travel in parts; the strict xfail `tests/attacks/review/test_r14_checks_psi_card_per_id_keys.py`
unpacked the tuple inside its malicious label holder, so it died on a TypeError before any point was blinded,
and a strict xfail counts any exception: a fix or a regression of the documented limitation would have gone
unnoticed. The repro now speaks the parts protocol and reads `CompactIds`, and its xfail is pinned to
``raises=AssertionError``.

Safe behaviour asserted here: the repro reaches its attack's assertion, i.e. it fails with the AssertionError of
the attack succeeding ("the label holder named ...% of its ids' membership correctly"), not with a PartyError or
TypeError from a changed internal API. When R14-CHECKS-6 is fixed, this test fails and must be updated with it.
"""

from __future__ import annotations

import pytest

from tests.attacks.review import test_r14_checks_psi_card_per_id_keys as r14


def test_r14_checks6_repro_still_runs_its_attack() -> None:
    with pytest.raises(AssertionError, match="membership correctly"):
        r14.test_the_label_holder_cannot_name_the_matching_ids_in_cardinality_mode()
