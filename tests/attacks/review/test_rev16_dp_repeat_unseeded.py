"""REV16-2: S-DP-REPEAT fails only a platform whose training is a bit-for-bit function of the TaskSpec seed. The
weak platform claims DP at epsilon 1 and adds no noise; `UnseededNoDp` is that platform ignoring the seed of DP
jobs (its minibatch order then comes from the OS, as for any job without a seed): no cheat aimed at the test, no
noise at all, and the two exports differ by the shuffle alone, so S-DP-REPEAT passes ("the platform draws randomness
the TaskSpec does not fix"). Many real platforms are not reproducible from one seed, so the test's power against
a platform that applies no DP is mostly against the weak reference platform itself.

The secure outcome asserted: fail (no DP noise in the job). One way there: run the same twin pair without ``dp``
too, and fail when the DP twins differ no more than the non-DP twins do (a platform that jitters only DP jobs still
passes; catalogue.md's R16B-7 limit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the R16-VERDICT / R16B / REV16 fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _rev16_fakes import UnseededNoDp  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@pytest.mark.xfail(strict=True, reason="REV16-2: S-DP-REPEAT passes a no-noise platform whose training is merely "
                   "not reproducible from the TaskSpec seed")
def test_a_platform_without_noise_that_ignores_the_seed_fails() -> None:
    ev = evaluate(UnseededNoDp(), ["S-DP-REPEAT"], seed=16)
    verdict, message = verdicts(ev)["S-DP-REPEAT"]
    print(verdict, message)
    assert verdict == "fail", message
