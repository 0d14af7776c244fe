"""Drift monitoring's release (`sampan.runtime.monitoring.drift_release`): what leaves a bank is binned counts on
bins fixed at training and PSI computed from them; under DP one charged Gaussian release.

A curious receiver (the consortium's coordinator, a dashboard) tries to get more and fails:
- noise below the party's floor, or a DP release without the party's ledger: refused, nothing released or charged;
- asking again and again: every release is charged write-ahead, and the budget stops the next one before any
  count is computed (nothing released past the budget);
- bins: the party bins at edges from its own registered artifact (scaler and the training run's score bands),
  whatever is asked, so fine bins that isolate one applicant cannot be requested.
Neighbouring-dataset test: D and D plus one current row (and D plus one training row), every noise source fixed:
under DP every changed field is a charged mechanism's output (counts) or computed from it (PSI), with the charge
in the party's ledger; without DP every changed field is one the release's receipt lists as revealed.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sampan.privacy.mechanisms
from sampan.errors import ConfigError
from sampan.privacy.ledger import Budget, BudgetExceeded, Ledger
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.monitoring import DriftReference, DriftRelease, drift_release

REFERENCE = DriftReference(score_edges=(0.1, 0.3, 0.5), feature_edges={"x1": (-1.0, 0.0, 1.0)})


def _populations(extra_current: bool = False, extra_reference: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    ref_s, cur_s, ref_x, cur_x = rng.random(50), rng.random(40), rng.normal(size=50), rng.normal(size=40) + 0.5
    if extra_current:
        cur_s, cur_x = np.append(cur_s, 0.95), np.append(cur_x, 3.0)
    if extra_reference:
        ref_s, ref_x = np.append(ref_s, 0.05), np.append(ref_x, -3.0)
    return {"reference_scores": ref_s, "current_scores": cur_s, "reference_X": {"x1": ref_x},
            "current_X": {"x1": cur_x}}


def _release(ledger: Path | None, noise: float | None, **data: Any) -> DriftRelease:
    return drift_release("bank_0", REFERENCE, noise_multiplier=noise, ledger_path=ledger,
                         budget=Budget(3.0, 1e-5), **(data or _populations()))


@pytest.mark.parametrize("noise, ledger", [(0.1, True), (float("nan"), True), (2.0, False)])
def test_weak_noise_or_no_ledger_is_refused_before_anything_is_charged(tmp_path: Path, noise: float,
                                                                      ledger: bool) -> None:
    path = tmp_path / "ledger.json"
    with pytest.raises(ConfigError, match="bank_0"):
        _release(path if ledger else None, noise)
    assert not path.exists()


def test_repeated_requests_end_in_a_budget_stop_with_nothing_released_past_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    released = 0
    with pytest.raises(BudgetExceeded):
        for _ in range(200):
            _release(path, 4.0)
            released += 1
    ledger = Ledger.from_json(path.read_text())
    assert len(ledger.events) == released > 0  # every release charged, the refused one not
    assert ledger.spent("bank_0") <= 3.0


def test_bins_come_from_the_artifact_not_from_the_request() -> None:
    arrays = {"scaler.mean": np.array([0.0]), "scaler.scale": np.array([1.0])}
    reference = DriftReference.from_model(arrays, {"feature_names": ["x1"]}, {"score_bands": []})
    assert reference.feature_edges["x1"] == (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)  # fixed z grid at training
    release = drift_release("bank_0", reference, **_populations())
    assert len(release.feature_counts["x1"]["current"]) == 9  # 8 bins + missing, whatever population it sees


def _fields(release: DriftRelease) -> dict[str, Any]:
    out: dict[str, Any] = {"score_psi": release.score_psi, **{f"feature_psi.{k}": v for k, v in
                                                             release.feature_psi.items()}}
    for part in ("reference", "current"):
        out[f"score_counts.{part}"] = tuple(release.score_counts[part])
        out.update({f"feature_counts.{k}.{part}": tuple(v[part]) for k, v in release.feature_counts.items()})
    return out


def _seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = itertools.count(1)
    monkeypatch.setattr(sampan.privacy.mechanisms, "secure_generator", lambda: seeded_generator(next(seeds)))


def _declared(release: DriftRelease, name: str) -> str:
    top = "score_psi, feature_psi" if "psi" in name.split(".")[0] else name.split(".")[0] + ".*"
    return next(r["protection"] for r in release.receipt if r["field"] == top)


@pytest.mark.parametrize("which", ["current", "reference"])
@pytest.mark.parametrize("noise", [2.0, None])
def test_neighbouring_datasets_differ_only_in_charged_or_receipted_fields(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str, noise: float | None) -> None:
    runs = []
    for neighbour in (False, True):
        _seeded(monkeypatch)
        ledger = tmp_path / f"{neighbour}.json"
        data = _populations(extra_current=neighbour and which == "current",
                            extra_reference=neighbour and which == "reference")
        runs.append((_release(ledger if noise else None, noise, **data), ledger))
    (d, ledger), (d1, _) = runs
    fields, fields1 = _fields(d), _fields(d1)
    assert set(fields) == set(fields1)
    changed = [k for k in fields if fields[k] != fields1[k] and not (
        isinstance(fields[k], float) and math.isnan(fields[k]) and math.isnan(fields1[k]))]
    assert changed  # the added row shows
    for name in changed:
        protection = _declared(d, name)
        if noise is None:
            assert protection.startswith("revealed") or protection.startswith("computed from the counts")
        else:
            assert protection.startswith("charged") or protection.startswith("computed from the counts")
    if noise is not None:
        events = Ledger.from_json(ledger.read_text()).events
        assert [(e.level, e.noise_multiplier) for e in events] == [("DP1", noise)]
