"""R16B-7 (documented, not fixed): the canary job of S-MIA / S-DP-AUDIT-ONE-RUN hides which of its columns are
canaries (R16-VERDICT-2), but the job itself is like no other job of the catalogue: about 500 features, every one
named attr_<6 hex>, while every other job has the ~30 drawn columns under their own names. A platform that claims DP
and adds the noise only in a job of that shape (`DpOnlyWhenAudited` in review/_r16b_fakes.py: Gaussian noise on the
published models' raw-scale coefficients, so the canary trace sees the verifier's share) passes both audits, while
every other job, DP requested or not (P-PRIVACY-COST's DP job included), trains in the clear.

A sound fix needs the audit inside a job the platform cannot tell from an ordinary DP job, or a check that an
ordinary DP job's models are noised as much as the claimed epsilon implies; neither fits this round. catalogue.md
must say precisely what such a platform gets (the audits' limit)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification" / "catalogue.md"


def _paragraph() -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"R16B-7.*?(?=\n  - \*\*|\n- \*\*|\n## )", text, re.S)
    assert found, "catalogue.md has no R16B-7 paragraph"
    return " ".join(found.group(0).split())


def test_catalogue_states_the_canary_job_is_recognisable_and_what_a_platform_gets() -> None:
    para = _paragraph()
    # what tells the job apart
    assert re.search(r"attr_<6 hex>", para) and re.search(r"\b500\b|512", para), para
    # what a cheating platform does and gets
    assert re.search(r"noise only in a job of that shape", para, re.I), para
    assert re.search(r"S-MIA and S-DP-AUDIT-ONE-RUN pass", para), para
    assert re.search(r"P-PRIVACY-COST", para) and re.search(r"in the clear", para), para
    # what a pass therefore means, and that it is not fixed
    assert re.search(r"not that it applies DP to the jobs it is asked to run with DP", para), para
    assert re.search(r"not fixed|neither is done", para, re.I), para


def test_the_cheat_the_paragraph_describes_is_still_in_the_review_fakes() -> None:
    fakes = (Path(__file__).resolve().parent / "review" / "_r16b_fakes.py").read_text(encoding="utf-8")
    assert "class DpOnlyWhenAudited" in fakes and "def canary_shaped" in fakes
