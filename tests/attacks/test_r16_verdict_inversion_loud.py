"""R16-VERDICT-5: S-GRAD-INVERSION passes ("not plain updates: nothing to invert") when the party's clear float
update is larger than 100 x lr x (max|x| + 1). The weak kit takes its learning rate from the platform's task view,
not from the verifier's TaskSpec, so a platform that tells the verifier's party lr x 1e5 gets a pass while every
update still travels in the clear (a known scale: the server divides it back). Fixed: the step size is fitted from
the party's own rows (scale-free), and "not a plain update" is a residual limit in thresholds.py
(`inversion_plain_residual_max`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, LoudStep, evaluate, verdicts  # noqa: E402

# slow: the inversion probe's least-squares fit runs 25-60 s (it converges well before its 60 s limit at rest;
# a smaller limit would only make the reconstruction, and so the verdict, worse)
pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_inversion_is_not_passed_by_a_scaled_clear_update() -> None:
    ev = evaluate(LoudStep(), ["S-GRAD-INVERSION"])
    verdict, message = verdicts(ev)["S-GRAD-INVERSION"]
    assert verdict == "fail", message  # float updates in the clear, one full-batch step each
