"""`sampan fraud train | scan | report`: a tiny demo end to end, exit codes, per-bank operating points (each bank
scans with its own threshold), and one-line errors on bad input with nothing half-written."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sampan.cli import app
from sampan.cli.fraud import FAKE_FOUND_EXIT
from sampan.runtime.store import Store

runner = CliRunner()


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["fraud", *args])


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, output
    return " ".join(lines[lines.index(errors[0]):])  # rich may wrap the one message over lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector trained by `sampan fraud train --demo` on three tiny banks (once for the module)."""
    root = tmp_path_factory.mktemp("fraud-cli")
    result = _invoke("train", "--demo", "--demo-banks", "3", "--demo-docs", "8", "--demo-size", "96",
                     "--rounds", "3", "--fpr", "0.25", "--validation-fraction", "0.5", "--seed", "4",
                     "--out", str(root / "detector.json"), "--work-dir", str(root / "work"))
    assert result.exit_code == 0, result.output
    assert "round 3/3" in result.output and "own threshold" in result.output
    assert "detector (model only) written" in result.output and "one process" in result.output
    return root


def _scan_images(folder: Path) -> list[Path]:
    import dataclasses

    from PIL import Image

    from sampan.fraud.corpus import DEFAULT_BANKS, bank_corpus

    folder.mkdir(exist_ok=True)
    paths = []
    for doc in bank_corpus(dataclasses.replace(DEFAULT_BANKS[0], size=(96, 96)), 2, 2, seed=77):
        path = folder / f"{doc.doc_id}.png"
        Image.fromarray(doc.image).save(path)
        paths.append(path)
    return paths


@pytest.mark.slow
def test_train_demo_writes_a_detector_with_its_run_and_validation(trained: Path) -> None:
    data = json.loads((trained / "detector.json").read_text())
    provenance = data["provenance"]
    assert data["format"] == "sampan.fraud.detector" and data["fpr"] == 0.25
    assert provenance["banks"] == ["bank_a", "bank_b", "bank_c"] and provenance["dp"] is None
    assert "Data provenance" in provenance["data_provenance"] and "one process" in provenance["simulation"]
    # the shared file: the model and its training provenance, nothing of any bank's validation
    assert data["threshold_scope"] == "bank" and "thresholds" not in data and "threshold" not in data
    assert "validation" not in provenance and "threshold" not in provenance
    for bank in ("bank_a", "bank_b", "bank_c"):  # each bank's own copy holds its operating point only
        path = trained / "work" / bank / "detector.json"
        own = json.loads(path.read_text())
        assert list(own["thresholds"]) == [bank] and own["threshold"] == own["thresholds"][bank]["threshold"]
        assert own["thresholds"][bank]["n_real_validation"] == 4 and own["fpr"] == 0.25
        assert list(own["provenance"]["validation"]["banks"]) == [bank] and own["model_sha256"] == data["model_sha256"]
        assert path.stat().st_mode & 0o077 == 0
    store = Store.open(f"sqlite:///{trained / 'work' / 'runs.db'}")
    assert store.get_run(provenance["run_id"]).status == "completed"
    folders = sorted(p.name for p in (trained / "work").iterdir() if not p.name.startswith("runs.db"))
    assert folders == ["bank_a", "bank_b", "bank_c", "reports"]  # one private folder per bank, no pooled table


@pytest.mark.slow
def test_scan_writes_a_json_verdict_and_a_wellformed_html_report_per_image(trained: Path) -> None:
    images = _scan_images(trained / "scans")
    out = trained / "out"
    own_copy = trained / "work" / "bank_b" / "detector.json"
    result = _invoke("scan", *map(str, images), "--detector", str(own_copy), "--out", str(out), "--bank", "bank_b")
    assert result.exit_code in (0, FAKE_FOUND_EXIT), result.output
    verdicts = [json.loads((out / f"{p.stem}.json").read_text()) for p in images]
    fakes = sum(v["verdict"]["is_fake"] for v in verdicts)
    assert (result.exit_code == FAKE_FOUND_EXIT) == (fakes > 0) and f"{fakes} of 4 images judged fake" in result.output
    own = json.loads(own_copy.read_text())["thresholds"]["bank_b"]
    assert "bank bank_b's own threshold" in result.output
    for path, verdict in zip(images, verdicts, strict=True):
        assert verdict["image"]["path"] == str(path.resolve()) and 0 <= verdict["verdict"]["score"] <= 1
        assert verdict["verdict"]["threshold"] == own["threshold"] and verdict["operating_point"]["bank"] == "bank_b"
        assert len(verdict["detector"]["model_sha256"]) == 64 and "validation" not in verdict["detector"]["provenance"]
        html = (out / f"{path.stem}.html").read_text()
        text = "".join(ET.fromstring(html.split("\n", 1)[1]).itertext())  # well-formed
        assert "bank bank_b's own threshold, fixed on 4 real validation images of that bank only" in text
        assert ("judged FAKE" if verdict["verdict"]["is_fake"] else "judged REAL") in html
    # the record re-renders into the same report (a view of the archived JSON)
    again = _invoke("report", str(out / f"{images[0].stem}.json"), "--out", str(trained / "again.html"))
    assert again.exit_code == 0, again.output
    assert "Most suspicious patches" in (trained / "again.html").read_text()


@pytest.mark.slow
def test_bad_scan_input_is_one_line_naming_the_file_and_nothing_is_written(trained: Path, tmp_path: Path) -> None:
    good = _scan_images(tmp_path / "scans")[0]
    detector = str(trained / "work" / "bank_a" / "detector.json")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "binary.json").write_bytes(bytes(range(200, 256)))
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    from PIL import Image

    Image.fromarray(np.full((96, 96, 3), 200, np.uint8)).save(tmp_path / "blank.png")  # readable, but no patch
    cases = [
        (["scan", str(good), str(tmp_path / "broken.png"), "--detector", detector], "broken.png"),
        (["scan", str(tmp_path / "missing.png"), "--detector", detector], "missing.png"),
        (["scan", str(good), str(tmp_path / "blank.png"), "--detector", detector], "blank.png"),
        (["scan", str(good), "--detector", str(tmp_path / "binary.json")], "binary.json"),
        (["scan", str(good), "--detector", str(tmp_path / "other.json")], "'format'"),
        (["scan", str(good), "--detector", str(tmp_path / "nope.json")], "nope.json"),
    ]
    shared = ["scan", str(good), "--detector", str(trained / "detector.json")]  # the model only: no threshold
    for args, named in [*cases, (shared, "shared model of a per-bank training")]:
        out = tmp_path / "out"
        result = _invoke(*args, "--bank", "bank_a", "--out", str(out))
        assert result.exit_code == 2, result.output
        assert named in _one_error_line(result.output)
        assert not out.exists()  # every input is checked before anything is written


@pytest.mark.slow
def test_report_refuses_another_image_and_a_non_record(trained: Path, tmp_path: Path) -> None:
    images = _scan_images(tmp_path / "scans")
    out = tmp_path / "out"
    result = _invoke("scan", str(images[0]), "--detector", str(trained / "work" / "bank_c" / "detector.json"),
                     "--out", str(out))  # a bank's own copy: one bank, no --bank needed
    assert result.exit_code in (0, FAKE_FOUND_EXIT), result.output
    record = out / f"{images[0].stem}.json"
    swapped = _invoke("report", str(record), "--image", str(images[1]), "--out", str(tmp_path / "x.html"))
    assert swapped.exit_code == 2 and images[1].name in _one_error_line(swapped.output)
    assert not (tmp_path / "x.html").exists()
    not_record = _invoke("report", str(trained / "detector.json"))
    assert not_record.exit_code == 2 and "not a Sampan verdict record" in _one_error_line(not_record.output)


def test_train_refuses_bad_bank_folders_naming_them(tmp_path: Path) -> None:
    bank = tmp_path / "bank_x"
    (bank / "real").mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(bank / "real" / "a.png")
    out = tmp_path / "det.json"
    result = _invoke("train", str(bank), "--out", str(out), "--work-dir", str(tmp_path / "work"))
    assert result.exit_code == 2 and "'fake'" in _one_error_line(result.output) and "bank_x" in result.output
    (bank / "fake").mkdir()
    result = _invoke("train", str(bank), "--out", str(out), "--work-dir", str(tmp_path / "work"))
    assert result.exit_code == 2 and "holds no images" in _one_error_line(result.output)
    (bank / "fake" / "b.png").write_bytes(b"\x89PNG broken")
    result = _invoke("train", str(bank), "--out", str(out), "--work-dir", str(tmp_path / "work"))
    assert result.exit_code == 2 and "b.png" in _one_error_line(result.output)
    result = _invoke("train", str(tmp_path / "nowhere"), "--out", str(out))
    assert result.exit_code == 2 and "nowhere" in _one_error_line(result.output)
    result = _invoke("train", "--demo", str(bank), "--out", str(out))
    assert result.exit_code == 2 and "not both" in _one_error_line(result.output)
    assert not out.exists() and not (tmp_path / "work").exists()


def test_train_refuses_a_bank_too_small_for_its_own_threshold_before_training(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for bank in ("bank_big", "bank_small"):
        for label in ("real", "fake"):
            (tmp_path / bank / label).mkdir(parents=True)
            for i in range(70 if bank == "bank_big" else 6):
                pixels = np.clip(rng.normal(128, 30, size=(32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / bank / label / f"{i}.png")
    out = tmp_path / "det.json"
    result = _invoke("train", str(tmp_path / "bank_big"), str(tmp_path / "bank_small"), "--out", str(out),
                     "--work-dir", str(tmp_path / "work"))
    line = _one_error_line(result.output)
    assert result.exit_code == 2 and "needs at least 10 real validation images; 'bank_small' holds out 2" in line
    assert "bank_big" not in line and not out.exists() and not (tmp_path / "work").exists()
    bad = _invoke("train", str(tmp_path / "bank_big"), "--out", str(out), "--threshold-scope", "global")
    assert bad.exit_code == 2 and "--threshold-scope" in _one_error_line(bad.output)


def test_training_drops_only_the_benign_accountant_note(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from sampan.cli.fraud import _quiet_benign_accountant_notes

    absl_logger = logging.getLogger("absl")
    with caplog.at_level(logging.WARNING, logger="absl"), _quiet_benign_accountant_notes():
        absl_logger.warning("_compute_log_a_frac failed to converge after %d iterations", 1000)
        absl_logger.warning("Negative Renyi divergence of %s", -1.0)  # not benign: epsilon would read 0
    assert [r.getMessage() for r in caplog.records] == ["Negative Renyi divergence of -1.0"]
    assert not absl_logger.filters  # removed after the training


def test_train_warns_when_a_banks_threshold_can_judge_nothing_fake_and_prints_names_inert(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The printing half of `train` with the training replaced: a bank whose own threshold is the score floor is
    warned about (its detector would call nothing fake), and a bank name with an ESC sequence prints inert."""
    from sampan.fraud import training
    from sampan.fraud.aggregate import SCORE_FLOOR
    from sampan.fraud.detector import Detector
    from sampan.fraud.federated import TrainResult, TrainSettings
    from sampan.fraud.fingerprint import FEATURE_NAMES
    from sampan.fraud.operating_point import OperatingPoint
    from sampan.fraud.scorer import LinearPatchModel

    F = len(FEATURE_NAMES)
    name = "bank\x1b[2Jx"
    figures = {"real_images": 4, "fake_images": 4, "fpr": 0.0, "fnr": 1.0, "auc": 0.5}

    def fake_build(banks: object, **_: object) -> training.DetectorBuild:
        model = LinearPatchModel(np.zeros(F), 0.0, np.zeros(F), np.ones(F))
        result = TrainResult(model, "run-x", (name,), TrainSettings(rounds=1), None, None, "unit: test")
        return training.DetectorBuild(Detector(model, threshold=SCORE_FLOOR), {"threshold_note": "n"}, result,
                                      {name: OperatingPoint(SCORE_FLOOR, 0.25, 4, "bank", name)}, "bank",
                                      {"banks": {name: figures}, "pooled": figures})

    monkeypatch.setattr(training, "build_detector", fake_build)
    monkeypatch.setattr(training, "demo_banks", lambda *a: [training.BankImages(name, [], "generated")])
    result = _invoke("train", "--demo", "--out", str(tmp_path / "det.json"), "--work-dir", str(tmp_path / "w"))
    assert result.exit_code == 0, result.output
    assert "no image can be judged fake" in result.output and "\x1b" not in result.output
    assert (tmp_path / "w" / name / "detector.json").stat().st_mode & 0o077 == 0
    assert (tmp_path / "w" / name).stat().st_mode & 0o077 == 0
