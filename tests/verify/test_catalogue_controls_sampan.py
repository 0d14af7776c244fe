"""The second negative control of S-MIA and S-DP-AUDIT-ONE-RUN: Sampan with its protection off. The canary job
runs without DP while Sampan's claim (epsilon) stays what it is, so both tests must fail (the DP-on side, which
passes, is the Sampan standard evaluation: docs/verification/catalogue.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from sampan.verify.catalogue.base import Context, Result, Test  # noqa: E402
from sampan.verify.catalogue.canaries import canary_job  # noqa: E402
from sampan.verify.catalogue.security_leak import _dp_spec, dp_audit_verdict, mia_verdict  # noqa: E402
from sampan.verify.runner import Target, run_evaluation  # noqa: E402
from sampan.verify.serve_local import serve_app  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]
TOKEN = "s" * 32


def _claimed(ctx: Context) -> dict[str, float]:
    dp = _dp_spec(ctx)
    assert dp is not None, "Sampan claims DP"
    return dp


def _dp_off_mia(ctx: Context) -> Result:
    return mia_verdict(canary_job(ctx, None), _claimed(ctx))


def _dp_off_audit(ctx: Context) -> Result:
    return dp_audit_verdict(canary_job(ctx, None), _claimed(ctx))


def test_canary_tests_fail_sampan_with_dp_off(tmp_path: Path) -> None:
    from sampan.web.bench_api import SampanBackend

    both = frozenset({"standard"})
    tests = [Test("X-MIA-DP-OFF", "S-MIA on a DP-off job", "security", both, _dp_off_mia, timeout_s=300),
             Test("X-AUDIT-DP-OFF", "S-DP-AUDIT on a DP-off job", "security", both, _dp_off_audit, timeout_s=300)]
    backend = SampanBackend(tmp_path / "platform")
    try:
        with serve_app(make_benchmark_app(backend, token=TOKEN)) as server:
            ev = run_evaluation(Target(server.url, TOKEN), "standard", tests=tests, data_dir=SHARED)
    finally:
        backend.close()
    out = {o.id: o for o in ev.outcomes}
    assert {k: v.verdict for k, v in out.items()} == {"X-MIA-DP-OFF": "fail", "X-AUDIT-DP-OFF": "fail"}, \
        {k: (v.verdict, v.message) for k, v in out.items()}
    assert out["X-AUDIT-DP-OFF"].figures["eps_lower"] > out["X-AUDIT-DP-OFF"].figures["claimed_epsilon"]
