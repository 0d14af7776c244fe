"""R16-AUDIT-5..7: the gradient-inversion probes under-report a leak, over-count recoveries, and have no size bound.

- 5: `recovered` means relative error <= 5%. A platform that adds small, non-DP noise to each update (15% of its
  norm) gets `n_recovered == 0`, `recovery_rate == 0` and `success == False`, although every planted record
  comes back with cosine similarity >= 0.97: the records leak, the result says they did not.
- 6: each planted record is scored against its best reconstruction, with no one-to-one matching: one
  reconstruction "recovers" several planted records (and many candidate rows eventually hit a record by chance),
  while the Clopper-Pearson interval treats each planted record as an independent trial.
- 7: `probe_fedavg_delta` has no bound on k*d: d = 300 features and k = 10 records runs for minutes (max_nfev =
  100*k*d with an underdetermined trust-region fit), d = 3000, k = 20 allocates dense (d, k*d) Jacobians
  (1.3 GiB each; the test caps the child at 1 GiB of address space) and ends in an untrapped MemoryError.
Each test asserts the correct behaviour (strict xfail until fixed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.special import expit

from sampan.audit import invert_lr_gradient, reconstruction_quality


def _grad(x: np.ndarray, y: float, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    r = float(expit(x @ w + b)) - y
    return r * x, r


@pytest.mark.xfail(strict=True, reason="R16-AUDIT-5: records rebuilt at cosine >= 0.97 are reported as not "
                                       "recovered (success False) after 15% non-DP noise")
def test_noisy_but_leaking_updates_are_reported_as_a_leak() -> None:
    rng = np.random.default_rng(1605)  # seeded: reproducible test
    d = 20
    planted, labels = rng.standard_normal((5, d)), np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    w = rng.standard_normal(d) * 0.3
    rows, bs = [], []
    for x, y in zip(planted, labels, strict=True):
        g, gb = _grad(x, y, w, 0.1)
        s = 0.15 * np.linalg.norm(np.append(g, gb)) / np.sqrt(d + 1)  # not DP: no clipping, no accounting
        rows.append(g + rng.normal(0.0, s, d))
        bs.append(gb + rng.normal(0.0, s))
    res = invert_lr_gradient(np.array(rows), np.array(bs), planted)
    assert min(res.cosine) >= 0.97  # every record is read back almost exactly
    assert res.success and res.n_recovered == 5, res.relative_error


@pytest.mark.xfail(strict=True, reason="R16-AUDIT-6: one reconstruction is counted as recovering several planted "
                                       "records")
def test_one_reconstruction_recovers_at_most_one_record() -> None:
    rng = np.random.default_rng(1606)
    x = rng.standard_normal(10)
    planted = np.vstack([x, 1.01 * x, 0.99 * x])
    res = reconstruction_quality(x[None, :], planted)
    assert res.n_recovered <= 1, res.recovered


_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))
    from sampan.audit import DeltaObservation, probe_fedavg_delta
    from sampan.errors import DataError
    d, k = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    obs = [DeltaObservation(rng.standard_normal(d) * 0.1, 0.0, rng.standard_normal(d) * 1e-3, 1e-3)
           for _ in range(4)]
    try:
        probe_fedavg_delta(obs, rng.standard_normal((k, d)), np.ones(k), lr=0.5, local_steps=1, restarts=0, rng=rng)
        print("RESULT")
    except DataError as exc:
        print("REFUSED", exc)
""")


@pytest.mark.xfail(strict=True, reason="R16-AUDIT-7: probe_fedavg_delta has no size/time bound (minutes at d=300, "
                                       "k=10; MemoryError at d=3000, k=20)")
@pytest.mark.parametrize(("d", "k"), [(300, 10), (3000, 20)])
def test_probe_answers_or_refuses_quickly(d: int, k: int) -> None:
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, str(d), str(k)], capture_output=True, text=True,
                             timeout=12)
    except subprocess.TimeoutExpired:
        pytest.fail(f"d={d}, k={k}: no answer within 12 s")
    assert out.returncode == 0 and ("RESULT" in out.stdout or "REFUSED" in out.stdout), out.stderr[-400:]
