"""Smoke test of the issue-20 QR benchmark (bench/qr_anticounterfeit.py) on tiny sizes: its pieces run, the JSON
shapes the snippet reads are there, the snippet carries the command, machine, tables and the simulated-channel
caveat. The figures themselves come from the full run, not from here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import _qr_cdp  # noqa: E402
import _qr_channel  # noqa: E402
import _qr_report  # noqa: E402
import qr_anticounterfeit  # noqa: E402


def _fake_results(copy_detection: dict, distributed: dict) -> dict:  # type: ignore[type-arg]
    return {"command": "nice -n 5 .venv/bin/python bench/qr_anticounterfeit.py", "seconds_total": 1.0,
            "machine": _qr_report.machine(),
            "config": {"seed": 1, "fl_rounds": 2, "layout": {"version": 10, "error": "h", "cdp_modules": 13}},
            "fl": {"items_per_site": 3, "site_plan": {"site_a": {"device": "phone-a", "copy_kinds": ["photocopy"]}}},
            "decode": {"conditions": {"fold": {"decoded": 1, "n": 1, "rate": 1.0}}},
            "copy_detection": copy_detection, "distributed": distributed,
            "quishing": _qr_channel.quishing_scores()}


def test_quishing_scores_on_the_corpus() -> None:
    q = _qr_channel.quishing_scores()
    assert set(q) == {"urls (allow-list non-strict)", "urls (allow-list strict)", "payment payloads"}
    assert q["urls (allow-list strict)"]["recall"] == 1.0
    assert all(0.0 <= v["precision"] <= 1.0 and v["n"] > 0 for v in q.values())


def test_quick_config_is_smaller_than_full() -> None:
    quick, full = qr_anticounterfeit.QrBenchConfig.quick(), qr_anticounterfeit.QrBenchConfig()
    assert quick.test_originals < full.test_originals and full.test_originals >= 300
    assert len(_qr_channel.conditions()) >= 15


@pytest.mark.slow
def test_tiny_copy_detection_distributed_and_snippet(tmp_path: Path) -> None:
    from sampan.qr.cdp import layout_for
    from sampan.qr.channel import rng_for
    from sampan.qr.linear import MODEL_FEATURES, LinearVerifierModel

    text, key = qr_anticounterfeit._issuer_text(1)
    layout = layout_for(text)
    rng = rng_for(1)
    train, serials, _ = _qr_cdp.train_originals(text, key, layout, 12, rng)   # the one-class model needs 12
    ts = _qr_cdp.build_test_set(text, key, layout, n_originals=3, n_copied=1, rng=rng, estimator_codes=2)
    model = LinearVerifierModel(np.ones(len(MODEL_FEATURES)), 0.0)
    cd = _qr_cdp.rate_all(ts, _qr_cdp.scorers(key, train, serials, {"federated": model}))
    assert set(cd["results"]) == {"correlation", "calibrated", "one_class", "fl:federated"}
    assert set(cd["results"]["correlation"]) == set(_qr_cdp.ATTACKER_PRINTERS)
    assert cd["threshold_method"] == {"0.01": "gaussian", "0.001": "gaussian"}   # 3 originals: extrapolated
    cd["counts"] = {"test_originals": 3, "copies_per_cell": 1, "train_originals": len(train)}
    dist = _qr_cdp.distributed_check(key, model, ts, scans=2)
    assert dist["verdicts_equal"] == dist["scans"] == 2 and dist["max_abs_score_difference"] < 1e-3
    results = _fake_results(cd, dist)
    _qr_report.write_json(tmp_path / "r.json", results)
    _qr_report.write_snippet(tmp_path / "s.md", results)
    snippet = (tmp_path / "s.md").read_text()
    assert "Command: `nice -n 5" in snippet and "commit" in snippet and "| correlation | attacker-hq |" in snippet
    assert ("the copy-detection figures hold for the simulated print-and-capture channel only, not for real "
            "printers and phones") in snippet
    assert "extrapolated" in snippet
