"""R16-VERDICT-9 (documented, not fixed): the platform operates every party except the verifier's, so a pass of
S-SECAGG-MASKED / S-GRAD-INVERSION cannot mean "the platform cannot read the verifier's update" (it holds the other
parties' updates and the aggregate). catalogue.md must say so."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification" / "catalogue.md"


def test_catalogue_states_the_platform_holds_every_other_party() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert re.search(r"collu|(runs|operates|holds) (all|every) other part|(all|every) other part\w* (is|are) "
                     r"(run|operated) by the platform", text, re.I), "no word on collusion with the other parties"
