"""R16-VERDICT-5: S-GRAD-INVERSION passes ("not plain updates: nothing to invert") when the party's clear float
update is larger than 100 x lr x (max|x| + 1). The weak kit takes its learning rate from the platform's task view,
not from the verifier's TaskSpec, so a platform that tells the verifier's party lr x 1e5 gets a pass while every
update still travels in the clear (a known scale: the server divides it back). Fixed: the step size is fitted from
the party's own rows (scale-free), and "not a plain update" is a residual limit in thresholds.py
(`inversion_plain_residual_max`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, LoudStep, evaluate, verdicts  # noqa: E402

# slow: the catalogue's inversion probe runs (a least-squares fit, 25-60 s at its own 60 s limit; here 10 s)
pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]

PROBE_SECONDS = 10.0


def test_inversion_is_not_passed_by_a_scaled_clear_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict does not hang on the probe's search: a sent vector that is the party's exact full-batch gradient
    step fails S-GRAD-INVERSION whether or not the fit recovers the records (the fit missed 2 runs in 5 even with
    its full 60 s), so the probe gets a shorter limit here; its own recovery is tested in
    tests/test_audit_attacks_inversion.py."""
    import sampan.audit.gradient_inversion as inversion

    probe = inversion.probe_fedavg_delta

    def shorter(*args: Any, **kwargs: Any) -> Any:
        return probe(*args, **{**kwargs, "time_limit_s": min(float(kwargs.get("time_limit_s", 60.0)), PROBE_SECONDS)})

    monkeypatch.setattr(inversion, "probe_fedavg_delta", shorter)
    ev = evaluate(LoudStep(), ["S-GRAD-INVERSION"])
    verdict, message = verdicts(ev)["S-GRAD-INVERSION"]
    assert verdict == "fail", message  # float updates in the clear, one full-batch step each
