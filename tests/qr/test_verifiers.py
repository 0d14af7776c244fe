"""Verifiers on the simulated channel: keyed correlation and a one-class model trained on originals only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sampan.errors import ConfigError, DataError
from sampan.qr.cdp import cdp_pattern, render_digital, render_original
from sampan.qr.channel import PrintCaptureChannel
from sampan.qr.features import N_STATS, extract_features
from sampan.qr.verifiers import CorrelationVerifier, OneClassModel, auc, p_miss_at, rates, threshold_at

from ._q3_data import KEY, TEXT, features_set, layout


@pytest.mark.slow
def test_correlation_separates_originals_from_photocopies_and_one_class_flags_them() -> None:
    data = features_set(12, ("photocopy",), seed=1)
    verifier = CorrelationVerifier(KEY)
    orig = np.array([verifier.score(f, f"SN-{i}") for i, f in enumerate(data["original"])])
    copies = np.array([verifier.score(f, f"SN-{i}") for i, f in enumerate(data["photocopy"])])
    assert auc(orig, copies) > 0.9
    model = OneClassModel().fit(np.array(data["original"]))  # originals only
    threshold, _ = threshold_at(model.score(np.array(data["original"])), 0.01, "empirical")
    flagged = model.score(np.array(data["photocopy"])) < threshold
    assert flagged.mean() > 0.8
    wrong = [CorrelationVerifier(b"\x99" * 32).score(f, f"SN-{i}") for i, f in enumerate(data["original"])]
    assert max(abs(w) for w in wrong) < 0.1 < orig.min()


@pytest.mark.slow
def test_another_serials_perfect_pattern_does_not_pass() -> None:
    """Attack: a counterfeiter puts a genuine item's exact pattern on a code for another serial; it scores ~0."""
    lay = layout()
    stolen = cdp_pattern(KEY, "SN-genuine", lay.size)
    capture = PrintCaptureChannel().transmit(render_digital(TEXT, lay, stolen), seed=2)
    features = extract_features(capture, lay)
    verifier = CorrelationVerifier(KEY)
    assert verifier.score(features, "SN-genuine") > 0.3
    assert abs(verifier.score(features, "SN-other")) < 0.1
    assert abs(verifier.hamming(features, "SN-other") - 0.5) < 0.05


def test_metrics_on_known_scores() -> None:
    orig = np.linspace(1.0, 2.0, 101)
    assert auc(orig, orig - 5.0) == 1.0 and auc(orig, orig + 5.0) == 0.0
    assert auc(orig, orig) == pytest.approx(0.5)
    thr, method = threshold_at(orig, 0.01)
    assert method == "empirical" and thr == pytest.approx(1.01)
    assert threshold_at(orig, 0.001)[1] == "gaussian"
    assert p_miss_at(orig, np.array([0.0, 1.5, 3.0]), 0.01) == pytest.approx(2 / 3)
    assert set(rates(orig, orig - 1)) == {"auc", "p_miss@0.01", "p_miss@0.001"}
    with pytest.raises(DataError):
        threshold_at(orig, 0.0)


def test_one_class_model_round_trips_through_json_and_refuses_misuse() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, N_STATS + 5))
    model = OneClassModel().fit(x)
    again = OneClassModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(model.score(x), again.score(x))
    assert model.score(x + 10.0).max() < model.score(x).min()
    with pytest.raises(DataError, match="fit"):
        OneClassModel().score(x)
    with pytest.raises(DataError, match="originals"):
        OneClassModel().fit(x[:3])
    with pytest.raises(ConfigError, match="key"):
        CorrelationVerifier(b"short")
    assert TEXT


@pytest.mark.slow
def test_evaluation_reports_every_verifier_and_kind() -> None:
    from sampan.qr.cdp_eval import evaluate

    ev = evaluate(TEXT, KEY, n_originals=4, n_train=N_STATS + 2, kinds=("photocopy",), seed=3)
    assert set(ev.results) == {"correlation", "hamming", "calibrated", "one_class"}
    assert ev.results["correlation"]["photocopy"]["auc"] > 0.9
    assert ev.undecoded["original"] == 0
    assert "photocopy" in ev.table()


def test_evaluation_refuses_an_unknown_attacker_printer() -> None:
    from sampan.qr.cdp_eval import evaluate

    with pytest.raises(ConfigError, match="attacker_printer"):
        evaluate(TEXT, KEY, n_originals=1, attacker_printer="nope")


@pytest.mark.slow
def test_calibrated_correlation_keeps_a_blurrier_unseen_phone_usable() -> None:
    """Originals from a blurrier phone than any in calibration fall below the raw threshold; the sharpness
    calibration keeps them above their copies."""
    from sampan.qr.channel import CaptureDevice, rng_for
    from sampan.qr.copies import make_copy
    from sampan.qr.verifiers import CalibratedCorrelation

    lay = layout()
    rng = rng_for(21)
    base = PrintCaptureChannel()
    train, serials = [], []
    for i in range(6):
        phone = base.with_device(("phone-a", "phone-b", "phone-c")[i % 3])
        serials.append(f"cal-{i}")
        train.append(extract_features(phone.transmit(render_original(TEXT, KEY, serials[-1], lay), i), lay))
    model = CalibratedCorrelation(KEY, margin=0.15).fit(train, serials)
    raw_min = min(CorrelationVerifier(KEY).score(f, s) for f, s in zip(train, serials, strict=True))
    blurry = base.with_device(CaptureDevice("phone-d", px_per_dot=1.25, blur_sigma=1.0, noise=4.0, jpeg_quality=80))
    orig, fake, raw = [], [], []
    for i in range(3):
        sheet = base.print_sheet(render_original(TEXT, KEY, f"d-{i}", lay), rng)
        f = extract_features(blurry.capture(sheet, rng), lay)
        g = extract_features(blurry.capture(make_copy("hq_reprint", sheet, rng, layout=lay), rng), lay)
        assert model.quality_ok(f)
        orig.append(model.score(f, f"d-{i}"))
        fake.append(model.score(g, f"d-{i}"))
        raw.append(CorrelationVerifier(KEY).score(f, f"d-{i}"))
    assert max(raw) < raw_min  # one raw threshold would reject these originals
    assert min(orig) > max(fake)


def test_correlation_is_a_sum_of_per_share_dot_products() -> None:
    """Sites holding additive shares of the cells each compute a share of the correlation with the template."""
    from sampan.qr.features import standard_cells
    from sampan.qr.verifiers import keyed_scores, template_vector

    rng = np.random.default_rng(4)
    pattern = cdp_pattern(KEY, "SN-8", 32)
    cells = standard_cells(np.where(pattern, 0.2, 0.8) + rng.normal(0.0, 0.3, pattern.shape))
    shares = [rng.normal(size=cells.size) for _ in range(2)]
    shares.append(cells - shares[0] - shares[1])
    t = template_vector(KEY, "SN-8", cells.size)
    assert sum(float(t @ s) for s in shares) / cells.size == pytest.approx(keyed_scores(cells, KEY, "SN-8")[0])
