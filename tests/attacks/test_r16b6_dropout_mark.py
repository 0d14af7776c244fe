"""R16B-6 controls of F-DROPOUT-RESUME's mark (`catalogue.dropout_mark`): the leaving party's last update carries a
mark along the quietest direction of the job's columns, and the final model may carry it about once.

- the mark goes on the party's last update only, along an exact null direction when the columns have one;
- honest platforms carry it once: the weak platform (test_r16_verdict_dropout_reported.py), Sampan in-process under
  secure aggregation and Flower (here; Sampan deployed measured 0.20, too slow for a test);
- the limit, asserted so that a fix shows up here: a stale update filed again in one later round only
  (`StaleOnce`) carries 0.36 < 2 x 0.25 and passes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

from sampan.verify.catalogue.dropout_mark import EIGEN_FLOOR, LOGIT_SD, Mark  # noqa: E402
from sampan.verify.catalogue.jobs import PartySpec  # noqa: E402
from sampan.verify.thresholds import value  # noqa: E402


def _parties() -> list[PartySpec]:
    """Four parties whose two one-hot columns a, b sum to 1 (an exact null direction), plus a noise column c."""
    rng = np.random.default_rng(7)  # seeded: a reproducible synthetic table
    out = []
    for i, n in enumerate((100, 100, 120, 80)):
        a = (rng.random(n) < 0.4).astype(float)
        rows = [[float(x), 1.0 - float(x), float(c), float(y)] for x, c, y in
                zip(a, rng.normal(size=n), rng.integers(0, 2, n), strict=True)]
        out.append(PartySpec(f"p{i}", "data_owner", {"columns": ["a", "b", "c", "label"], "rows": rows}))
    return out


def test_the_mark_goes_on_the_last_update_only_along_a_null_direction() -> None:
    mark = Mark.plan(_parties(), ["a", "b", "c"], after=2)
    assert mark.eigenvalue < 1e-9 and mark.size == pytest.approx(LOGIT_SD / np.sqrt(EIGEN_FLOOR))
    u = mark.direction
    assert abs(u[2]) < 1e-9 and u[3] == 0.0 and abs(abs(u[0]) - abs(u[1])) < 1e-9  # a + b only; no intercept
    assert mark.share == pytest.approx(0.25)  # max(80 / 400 rows, 1 / 4 parties)
    w = np.ones(4)
    first, second, third = (mark.hook(r, w.copy()) for r in (1, 2, 3))
    assert np.array_equal(first, w) and np.array_equal(third, w)
    assert np.allclose(second - w, mark.size * u) and mark.marked == [2]


def test_carried_once_passes_and_carried_repeatedly_fails() -> None:
    mark = Mark.plan(_parties(), ["a", "b", "c"], after=2)
    mark.hook(1, np.zeros(4))
    mark.hook(2, np.zeros(4))
    last = np.full(4, 0.3)
    once = mark.judge(last + 0.2 * mark.size * mark.direction, last)
    stale = mark.judge(last + (1 - 0.8**5) * mark.size * mark.direction, last)
    assert once["status"] == "once" and once["carried"] == pytest.approx(0.2)
    assert stale["status"] == "repeated" and stale["carried"] > value("dropout_mark_repeat_max") * mark.share
    assert Mark.plan(_parties(), ["a", "b", "c"], after=2).judge(last, last)["status"] == "not checked"  # unmarked


def _needs_the_platforms() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from _r16_verdict_fakes import SHARED

    if not (SHARED / "german_credit").is_dir():
        pytest.skip("shared datasets not found")


def test_the_limit_a_stale_update_filed_again_once_passes() -> None:
    _needs_the_platforms()
    from _r16_verdict_fakes import evaluate, verdicts
    from _r16b_fakes import StaleOnce

    ev = evaluate(StaleOnce(), ["F-DROPOUT-RESUME"], seed=16)
    verdict, message = verdicts(ev)["F-DROPOUT-RESUME"]
    assert verdict == "pass", message  # documented in catalogue.md (R16B-6): 1 - 0.8^2 = 0.36 < 2 x 0.25
    assert ev.outcomes[0].evidence["mark"]["carried"] == pytest.approx(0.36, abs=0.02)


def test_honest_sampan_in_process_carries_the_mark_once(tmp_path: Path) -> None:
    _needs_the_platforms()
    from _r16_verdict_fakes import SHARED

    from sampan.verify.runner import Target, run_evaluation
    from sampan.verify.serve_local import serve_app
    from sampan.verify.server import make_benchmark_app
    from sampan.web.bench_api import SampanBackend

    backend = SampanBackend(tmp_path / "platform")
    try:
        with serve_app(make_benchmark_app(backend, token="s" * 32)) as server:
            ev = run_evaluation(Target(server.url, "s" * 32), "standard", only=["F-DROPOUT-RESUME"],
                                data_dir=SHARED, seed=16)
    finally:
        backend.close()
    outcome = ev.outcomes[0]
    assert outcome.verdict == "pass", outcome.message
    mark = outcome.evidence["mark"]
    assert mark["status"] == "once" and abs(mark["carried"] - 0.2) < 0.05, mark  # its row share, under SecAgg+


def test_honest_flower_carries_the_mark_once() -> None:
    """Flower also sends the party the aggregate of its last round (its evaluate message), which carries the mark
    once already: the mark is judged against the model the marked update was trained from, not that one."""
    _needs_the_platforms()
    from sampan.verify.platforms.flower_proc import FlowerMissing, flower_python

    try:
        flower_python()
    except FlowerMissing as exc:
        pytest.skip(f"Flower is not installed: {exc}")
    from _r16_verdict_fakes import SHARED

    from sampan.verify.platforms.flower import FlowerBackend
    from sampan.verify.runner import Target, run_evaluation
    from sampan.verify.serve_local import serve_app
    from sampan.verify.server import make_benchmark_app

    backend = FlowerBackend()
    try:
        with serve_app(make_benchmark_app(backend, token="s" * 32)) as server:
            ev = run_evaluation(Target(server.url, "s" * 32), "standard", only=["F-DROPOUT-RESUME"],
                                data_dir=SHARED, seed=16)
    finally:
        backend.close()
    outcome = ev.outcomes[0]
    assert outcome.verdict == "pass", outcome.message
    mark = outcome.evidence["mark"]
    assert mark["status"] == "once" and abs(mark["carried"] - 0.2) < 0.05, mark
