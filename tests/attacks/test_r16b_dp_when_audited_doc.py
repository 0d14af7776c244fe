"""R16B-7: the canary job of S-MIA / S-DP-AUDIT-ONE-RUN hides which of its columns are canaries (R16-VERDICT-2), but
the job itself is like no other job of the catalogue: about 500 features, every one named attr_<6 hex>, while every
other job has the ~30 drawn columns under their own names. A platform that claims DP and adds the noise only in a job
of that shape (`DpOnlyWhenAudited` in review/_r16b_fakes.py: Gaussian noise on the published models' raw-scale
coefficients, so the canary trace sees the verifier's share) passes both audits, while every other job, DP requested
or not (P-PRIVACY-COST's DP job included), trains in the clear.

Fixed to the sound minimum (`catalogue.dp_repeat`, S-DP-REPEAT): P-PRIVACY-COST's DP job runs twice with one TaskSpec
(one seed) on the same data; identical exports mean no noise the TaskSpec does not fix, which no DP mechanism that
learns from the data can be. The cheat fails it. What remains (a platform that perturbs only the repeat, or jitters
just above the tolerance; no noise floor is sound for every mechanism) is stated in catalogue.md and asserted in
test_r16b7_dp_repeat.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification" / "catalogue.md"


def _paragraph() -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"R16B-7.*?(?=\n  - \*\*|\n- \*\*|\n## )", text, re.S)
    assert found, "catalogue.md has no R16B-7 paragraph"
    return " ".join(found.group(0).split())


def test_noise_only_in_the_canary_shaped_job_fails_the_repeat_check() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from _r16_verdict_fakes import SHARED, evaluate, verdicts
    from _r16b_fakes import DpOnlyWhenAudited

    if not (SHARED / "german_credit").is_dir():
        pytest.skip("shared datasets not found")
    ev = evaluate(DpOnlyWhenAudited(), ["S-DP-REPEAT"], seed=16)
    verdict, message = verdicts(ev)["S-DP-REPEAT"]
    assert verdict == "fail", message
    assert "exported the same model" in message, message
    assert ev.outcomes[0].figures["max_abs_difference"] == 0.0  # trained in the clear: the same model twice


def test_catalogue_states_the_fix_and_what_a_platform_still_gets() -> None:
    para = _paragraph()
    # what tells the canary job apart, and the cheat
    assert re.search(r"attr_<6 hex>", para) and re.search(r"\b500\b|512", para), para
    assert re.search(r"noise only in a job of that shape", para, re.I), para
    assert re.search(r"S-MIA and S-DP-AUDIT-ONE-RUN pass", para), para
    # the fix and why it is sound
    assert re.search(r"S-DP-REPEAT", para) and re.search(r"same TaskSpec seed|one TaskSpec", para), para
    assert re.search(r"CSPRNG", para), para  # honest Sampan passes: its noise is not from the seed
    # what remains, said plainly
    assert re.search(r"no noise floor is sound", para, re.I), para
    assert re.search(r"perturbs only the repeat", para) and re.search(r"jitter", para), para
    assert re.search(r"not that it applies DP to the jobs it is asked to run with DP", para), para


def test_the_cheat_the_paragraph_describes_is_still_in_the_review_fakes() -> None:
    fakes = (Path(__file__).resolve().parent / "review" / "_r16b_fakes.py").read_text(encoding="utf-8")
    assert "class DpOnlyWhenAudited" in fakes and "def canary_shaped" in fakes
