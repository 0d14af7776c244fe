"""CLI for the document-forgery detector: ``sampan fraud train | scan | report``.

``train`` reads one folder per bank (``<bank>/real/*.png`` and ``<bank>/fake/*.png``), or generates the built-in
banks with ``--demo``, trains the patch model across the banks through the horizontal workflow (a stored run with
its privacy receipt) and writes a detector JSON with the shared model and, per bank, a threshold that bank fixed on
its OWN held-out real images at ``--fpr`` (no validation score leaves a bank; ``--threshold-scope pooled`` pools all
banks' validation scores instead: a simulation/benchmark setting that, between real banks, would release each
validation document's score). Each bank's folder also gets ``detector.json`` holding only its own operating point.
``scan --bank NAME`` uses that bank's threshold (``--bank`` may be left out when the file has one bank) and writes,
per image, a JSON verdict record and an HTML detection report; its exit code says whether a fake was found (0 none,
10 at least one). ``report`` renders the HTML again from a saved verdict record and the image
(the record is what a bank archives; the page is a view of it, rebuilt without re-scanning and checked against the
image's SHA-256).

Default FPR 0.05: a threshold at FPR r needs at least 1/r real validation images (20 here) AT EACH BANK; 0.01 needs
100, more than a small bank's held-out set (training is refused up front, naming the bank and the count). State the
FPR your review process can absorb.

Every input is read and checked before anything is written; bad input ends in one ``error:`` line naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from sampan.cli.error_path import ErrorHandlingGroup

__all__ = ["FAKE_FOUND_EXIT", "fraud_app"]

FAKE_FOUND_EXIT = 10
fraud_app = typer.Typer(help="Detect AI-forged loan documents: train the detector across banks (federated), scan "
                             "images, render detection reports.",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        cls=ErrorHandlingGroup)
console = Console(highlight=False)


class _BenignAccountantNote(logging.Filter):
    """Drops dp_accounting's "_compute_log_a_frac failed to converge ... Excluding this order" warning.

    Why it is benign: the RDP accountant then leaves that one Renyi order out, and epsilon is the minimum over the
    remaining orders, still a valid upper bound. The noise calibration's search tries small noise multipliers where
    this happens at low orders, so a DP training printed it many times. Every other absl warning (e.g. a negative
    Renyi divergence, which would make epsilon read 0) still reaches stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("_compute_log_a_frac failed to converge")


@contextmanager
def _quiet_benign_accountant_notes() -> Iterator[None]:
    """Attach `_BenignAccountantNote` to absl's logger for the duration of a training (removed after)."""
    note = _BenignAccountantNote()
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(note)
    try:
        yield
    finally:
        absl_logger.removeFilter(note)


def _progress_printer(total: int) -> Any:
    """Print one line per finished round (the runner's ``round`` stage)."""

    def show(stage: str, info: Any) -> None:
        if stage == "warning":  # e.g. DP1 noise large against a small bank's statistics
            console.print(f"[yellow]warning:[/] {escape(str(info.get('message', '')))}")
        elif stage == "run_started":
            console.print(f"run {escape(str(info.get('run_id', '')))} started ({total} rounds)")
        elif stage == "round":
            metrics = dict(info.get("global") or {})
            auc = metrics.get("auc")
            loss = info.get("train_loss")
            parts = [f"round {info['round']}/{total}"]
            parts.append(f"holdout AUC {auc:.3f}" if isinstance(auc, float) else "holdout AUC n/a")
            parts.append(f"train loss {loss:.4f}" if isinstance(loss, float) and loss == loss else
                         "train loss not released")
            console.print("  " + ", ".join(parts))

    return show


@fraud_app.command("train")
def train(
    banks: list[Path] = typer.Argument(None, help="One folder per bank, each with real/ and fake/ image folders."),
    out: Path = typer.Option(..., "--out", "-o", help="The detector JSON to write."),
    demo: bool = typer.Option(False, "--demo", help="Generate the built-in non-IID banks instead of reading folders."),
    demo_banks: int = typer.Option(3, help="--demo: how many of the built-in banks (1-4)."),
    demo_docs: int = typer.Option(30, help="--demo: real and fake documents per bank (each)."),
    demo_size: int = typer.Option(256, help="--demo: image side in pixels."),
    work_dir: Path = typer.Option(Path("sampan-fraud"), help="Each bank's private folder and the run report."),
    store: Path | None = typer.Option(None, help="SQLite run store (default: WORK_DIR/runs.db)."),
    model: str = typer.Option("logistic", help="Patch model: logistic or mlp."),
    rounds: int = typer.Option(10, min=1, max=1000),
    learning_rate: float = typer.Option(0.1, min=1e-6),
    fpr: float = typer.Option(0.05, help="False-positive rate on real validation images the threshold is fixed at."),
    validation_fraction: float = typer.Option(0.3, help="Share of each bank's documents held out for the threshold."),
    max_patches_per_doc: int = typer.Option(16, min=1, help="Training patches per document (k of the DP unit)."),
    epsilon: float | None = typer.Option(None, min=0.01, help="Train with DP-SGD at this per-bank budget."),
    patch_size: int = typer.Option(32, min=8, help="Slicer patch size and stride (pixels)."),
    seed: int | None = typer.Option(None, help="Fix splits and initialisation (DP noise stays random)."),
    threshold_scope: str = typer.Option("bank", help="bank: each bank fixes its own threshold on its own validation "
                                                     "images (no score leaves a bank); pooled: one threshold on all "
                                                     "banks' validation scores pooled (simulation/benchmark only)."),
) -> None:
    """Train the detector across banks (federated); each bank fixes its own threshold at --fpr."""
    from sampan.errors import ConfigError
    from sampan.files import atomic_write_json
    from sampan.fraud.federated import DpSettings, TrainSettings
    from sampan.fraud.operating_point import for_bank
    from sampan.fraud.slicer import SlicerConfig
    from sampan.fraud.training import build_detector, detector_file, folder_banks, public_reference_bounds
    from sampan.fraud.training import demo_banks as make_demo

    if demo == bool(banks):
        raise ConfigError("give one folder per bank, or --demo (not both)")
    if model not in ("logistic", "mlp"):
        raise ConfigError(f"--model must be logistic or mlp (got {model!r})")
    if threshold_scope not in ("bank", "pooled"):
        raise ConfigError(f"--threshold-scope must be bank or pooled (got {threshold_scope!r})")
    if not 0 < validation_fraction < 1:
        raise ConfigError(f"--validation-fraction must be in (0, 1) (got {validation_fraction})")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    slicer = SlicerConfig(size=patch_size, stride=patch_size)
    inputs = make_demo(demo_banks, demo_docs, demo_size, seed if seed is not None else 0) if demo \
        else folder_banks(banks)
    console.print(f"{len(inputs)} banks: {', '.join(escape(b.name) for b in inputs)}")
    dp = None
    if epsilon is not None:
        console.print("DP: standardisation bounds from the public reference corpus (published seed)")
        dp = DpSettings(epsilon=epsilon, bounds=public_reference_bounds(slicer, size=demo_size if demo else 256))
    settings = TrainSettings(model=model, rounds=rounds, learning_rate=learning_rate,  # type: ignore[arg-type]
                             max_patches_per_doc=max_patches_per_doc)
    with _quiet_benign_accountant_notes():
        built = build_detector(inputs, settings=settings, dp=dp, fpr=fpr, validation_fraction=validation_fraction,
                               slicer=slicer, store_path=store or work_dir / "runs.db", work_dir=work_dir, seed=seed,
                               say=lambda text: console.print(escape(text)), progress=_progress_printer(rounds),
                               threshold_scope=threshold_scope)  # type: ignore[arg-type]
    from sampan.fraud.corpus import PROVENANCE

    data_note = PROVENANCE if demo else (
        f"Trained on the labelled images of the bank folders {', '.join(b.origin for b in inputs)} (real/ and fake/ "
        "as each bank labelled them); Sampan makes no statement about how those documents were collected.")
    content = detector_file(built, data_note)
    atomic_write_json(out, content, indent=1)
    pooled = built.provenance["validation"]["pooled"]
    for name, point in built.thresholds.items():
        figures = built.provenance["validation"]["banks"][name]
        atomic_write_json(work_dir / name / "detector.json", for_bank(content, name), indent=1)
        console.print(f"{escape(name)}: own threshold {point.threshold:.4f} at FPR {fpr:g} on its "
                      f"{point.n_real_validation} real validation images; FPR {figures['fpr']:.3f}, FNR "
                      f"{_rate(figures['fnr'])}, AUC {_rate(figures['auc'])} (its copy: "
                      f"{escape(str(work_dir / name / 'detector.json'))})")
    scope = "each bank's own threshold" if built.thresholds else \
        f"pooled threshold {built.detector.threshold:.4f} (simulation: validation scores pooled)"
    console.print(f"{scope} at FPR {fpr:g}; validation over all banks: FPR {_rate(pooled['fpr'])}, FNR "
                  f"{_rate(pooled['fnr'])}, AUC {_rate(pooled['auc'])} ({pooled['real_images']} real, "
                  f"{pooled['fake_images']} fake images)")
    console.print(f"privacy: {escape(built.result.privacy_unit)}")
    console.print(f"detector written to {escape(str(out))} (run {escape(str(built.result.run_id))})")


def _rate(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def _load_detector(path: Path, bank: str | None = None) -> tuple[Any, dict[str, Any], Any]:
    """(Detector with the scanning bank's threshold, its provenance, the operating point) from a detector file;
    every error names the file (a binary file included)."""
    from sampan.errors import ConfigError
    from sampan.fraud.detector import Detector
    from sampan.fraud.operating_point import select_operating_point

    source = f"detector file {str(path)!r}"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{source} is not a JSON detector file: {exc}") from None
    detector = Detector.from_dict(data, source)
    provenance = data.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise ConfigError(f"{source}: field 'provenance' must be an object")
    detector, point = select_operating_point(detector, data, bank, source)
    return detector, provenance or {}, point


def _output_names(images: list[Path]) -> list[str]:
    """One output stem per image: its file stem, with -2, -3... when two images share a stem."""
    seen: dict[str, int] = {}
    names = []
    for path in images:
        stem = path.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


@fraud_app.command("scan")
def scan(
    images: list[Path] = typer.Argument(..., help="Image files to scan."),
    detector_path: Path = typer.Option(..., "--detector", "-d", help="A detector JSON from `sampan fraud train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <image>.json and <image>.html."),
    bank: str | None = typer.Option(None, "--bank", help="The scanning bank: its own threshold from the detector "
                                                         "file (may be left out when the file has one bank)."),
) -> None:
    """Scan images with your bank's threshold: a JSON verdict and an HTML report each; exit 10 when any image is
    judged fake."""
    from sampan.errors import DataError
    from sampan.files import atomic_write_bytes, atomic_write_json
    from sampan.fraud.detector import load_image
    from sampan.fraud.report import render_detection_report, verdict_record

    detector, provenance, point = _load_detector(detector_path, bank)
    pixels = [load_image(path) for path in images]  # every image read before anything is written
    data_note = str(provenance.get("data_provenance") or "not recorded in the detector file")
    scanned = []  # every image scanned and its report rendered before anything is written (a flat image fails)
    for path, image in zip(images, pixels, strict=True):
        try:
            verdict = detector.scan(image)
        except DataError as exc:
            raise DataError(f"image {str(path)!r}: {exc}") from None
        record = verdict_record(verdict, image, image_path=str(path.resolve()), detector_path=str(detector_path),
                                aggregation=detector.aggregation, provenance=provenance, data_note=data_note,
                                operating_point=point.to_dict())
        scanned.append((path, verdict, record, render_detection_report(record, image)))
    out.mkdir(parents=True, exist_ok=True)
    console.print(escape(f"operating point: {point.describe()}"))
    found = 0
    for (path, verdict, record, html), name in zip(scanned, _output_names(images), strict=True):
        atomic_write_bytes(out / f"{name}.html", html.encode("utf-8"))
        atomic_write_json(out / f"{name}.json", record, indent=1)
        found += verdict.is_fake
        word = "[bold red]FAKE[/]" if verdict.is_fake else "[green]real[/]"
        console.print(f"{word}  score {verdict.score:.4f} (threshold {verdict.threshold:.4f}, FPR "
                      f"{verdict.fpr:g})  {escape(str(path))} -> {escape(str(out / name))}.json/.html")
    console.print(f"{found} of {len(images)} images judged fake")
    if found:
        raise typer.Exit(FAKE_FOUND_EXIT)


@fraud_app.command("report")
def report(
    record_path: Path = typer.Argument(..., help="A verdict JSON written by `sampan fraud scan`."),
    image: Path | None = typer.Option(None, help="The scanned image (default: the path in the record)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="HTML file (default: the record with .html)."),
) -> None:
    """Render the HTML detection report again from a saved verdict record and its image."""
    from sampan.errors import ConfigError
    from sampan.fraud.detector import load_image
    from sampan.fraud.report import check_record, write_detection_report

    try:
        record = json.loads(record_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read verdict record {str(record_path)!r}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"verdict record {str(record_path)!r} is not valid JSON: {exc}") from None
    record = check_record(record, f"verdict record {str(record_path)!r}")
    source = image if image is not None else Path(str(record["image"].get("path", "")))
    target = out if out is not None else record_path.with_suffix(".html")
    written = write_detection_report(target, record, load_image(source), image_name=str(source))
    console.print(f"report written to {escape(str(written))}")
