"""The Flower platform under bad updates from the verifier's party: the kit delivers them as the hook made them.

Flower checks no update (no shape, finiteness or norm check in FedAvg): a NaN update poisons the global model and a
1000x long one crashes the aggregation, so the job fails. The catalogue's S-MALFORMED and S-OVERSIZED tests rely on
the kit sending such updates instead of filtering them. Skipped when Flower is not installed.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from sampan.verify.kits import RecordingTap, get_kit
from sampan.verify.platforms.flower_proc import FlowerMissing, flower_python

try:
    flower_python()
except FlowerMissing as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"Flower is not installed: {exc}", allow_module_level=True)

from _flower_fixtures import _setup, _spec, _table, _wait  # noqa: E402

from sampan.verify.platforms.flower import FlowerBackend  # noqa: E402


@pytest.fixture()
def backend() -> Any:
    b = FlowerBackend()
    yield b
    b.close()


@pytest.mark.parametrize("hook, words", [
    (lambda r, w: np.full_like(w, np.nan), "not finite"),
    (lambda r, w: np.tile(w, 1000), "Flower"),
], ids=["nan", "x1000"])
def test_a_bad_update_goes_out_as_the_hook_made_it_and_flower_does_not_survive_it(
        backend: FlowerBackend, hook: Any, words: str) -> None:
    """Flower checks no update: a NaN or 1000x long one (sent as is by the kit) fails the job; the catalogue's
    S-MALFORMED/S-OVERSIZED need the kit to deliver it, not to filter it."""
    pid, connect = _setup(backend)
    job = backend.submit_job(pid, _spec(["bank-a", "bank-b", "verifier"], rounds=1))
    tap = RecordingTap()
    errors: list[BaseException] = []

    def party() -> None:
        try:
            get_kit("flower", update_hook=hook).run(job.job_id, "verifier", _table(150, 5), connect, None, tap,
                                                    threading.Event())
        except BaseException as exc:  # noqa: BLE001 - the kit fails too when the server dies: expected here
            errors.append(exc)

    thread = threading.Thread(target=party, daemon=True)
    thread.start()
    assert _wait(backend, job.job_id) == "failed"
    error = backend.job(job.job_id).error
    assert error is not None and words in error.message, error
    thread.join(timeout=20)
    assert tap.updates()[1]["weights"].size in (4, 4000)
