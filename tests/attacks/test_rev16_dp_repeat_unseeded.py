"""REV16-2 (documented limit): S-DP-REPEAT fails only a platform whose training is a bit-for-bit function of the
TaskSpec seed. `UnseededNoDp` claims DP at epsilon 1, adds no noise and ignores the seed of DP jobs (its minibatch
order then comes from the OS): the two exports differ by the shuffle alone, and S-DP-REPEAT passes.

No sound, cheap check found: twin non-DP jobs do not separate it from honest DP (this platform ignores the seed in DP
jobs only, so its non-DP twins agree and its DP twins differ, exactly as with small honest noise), and no noise floor
is sound for every epsilon-DP mechanism (dp_repeat.py). So the test pins the limit: the fake passes, the outcome says
a pass is randomness and not noise, and catalogue.md states both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B / REV16 fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _rev16_fakes import UnseededNoDp  # noqa: E402

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "verification" / "catalogue.md"


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def test_the_catalogue_states_what_a_pass_means() -> None:
    text = _flat(CATALOGUE.read_text(encoding="utf-8"))
    assert "a pass means the dp job is not a deterministic function of the data and the taskspec" in text
    assert "a platform whose training is not reproducible from the seed passes without noise" in text
    assert "rev16-2" in text


@pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")
def test_the_limit_a_platform_without_noise_that_ignores_the_seed_passes() -> None:
    ev = evaluate(UnseededNoDp(), ["S-DP-REPEAT"], seed=16)
    verdict, message = verdicts(ev)["S-DP-REPEAT"]
    assert verdict == "pass", message  # the limit: randomness, not noise
    assert "not a deterministic function of the data and the TaskSpec" in message
    assert "passes without noise" in message
