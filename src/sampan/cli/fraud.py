"""CLI for the document-forgery detector: ``sampan fraud train | scan | report``.

``train`` is a SIMULATION of the consortium: it runs every bank in this one process. It reads one folder per bank
(``<bank>/real/*.png`` and ``<bank>/fake/*.png``), or generates the built-in banks with ``--demo``, writes each
bank's patch rows in that bank's own folder and trains the patch model through the horizontal workflow with
in-process parties (only the workflow's messages pass between them; a stored run with its privacy receipt). Whoever
runs it holds every bank's documents: a deployed fraud path (each bank's agent extracting its own features,
``sampan submit``) is not built. The shared detector JSON (``--out``) carries the model and its training
provenance, nothing of any bank's validation; each bank's threshold, fixed on its OWN held-out real images at
``--fpr`` (it is one of those images' scores), and its validation figures go to that bank's own copy,
``WORK_DIR/<bank>/detector.json``, only. ``--threshold-scope pooled`` pools all banks' validation scores instead (a
simulation/benchmark setting that, between real banks, would release each validation document's score).
``scan --bank NAME`` scans with a bank's own copy (``--bank`` may be left out when the file has one bank) and
writes, per image, a JSON verdict record and an HTML detection report (0600, in a 0700 folder: they embed the
customer's document); its exit code says whether a fake was found (0 none, 10 at least one). ``report`` renders the
HTML again from a saved verdict record and the image (the record is what a bank archives; the page is a view of it,
rebuilt without re-scanning and checked against the image's SHA-256).

Default FPR 0.10, the operating point of the FantasyID protocol: a threshold at FPR r needs at least 1/r real
validation images (10 here) AT EACH BANK; 0.01 needs 100, more than a small bank's held-out set (training is refused up
front, naming the bank and the count). State the FPR your review process can absorb. The demo's default of 40 real and
40 fake documents per bank holds out 12 real ones per bank at --validation-fraction 0.3.

Every input is read and checked before anything is written; bad input ends in one ``error:`` line naming the file.
Text taken from files (bank names, paths, provenance) is printed with control characters replaced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
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
fraud_app = typer.Typer(help="Detect AI-forged loan documents: train the detector across banks (a simulation: every "
                             "bank runs in this one process), scan images, render detection reports.",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        cls=ErrorHandlingGroup)
console = Console(highlight=False)
MAX_RECORD_BYTES = 64 << 20  # a verdict record: every patch's box and score (at most 100k patches)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _plain(text: object) -> str:
    """``text`` safe for the terminal: C0/C1 control characters and bidi overrides replaced by U+FFFD, rich
    markup escaped (names and paths from files must not move the cursor, clear the screen or fake a line)."""
    return escape(_CONTROL.sub("\ufffd", str(text)))


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
            console.print(f"[yellow]warning:[/] {_plain(info.get('message', ''))}")
        elif stage == "run_started":
            console.print(f"run {_plain(info.get('run_id', ''))} started ({total} rounds)")
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
    demo_docs: int = typer.Option(40, help="--demo: real and fake documents per bank (each)."),
    demo_size: int = typer.Option(256, help="--demo: image side in pixels."),
    work_dir: Path = typer.Option(Path("sampan-fraud"), help="Each bank's private folder and the run report."),
    store: Path | None = typer.Option(None, help="SQLite run store (default: WORK_DIR/runs.db)."),
    model: str = typer.Option("logistic", help="Patch model: logistic or mlp."),
    rounds: int = typer.Option(10, min=1, max=1000),
    learning_rate: float = typer.Option(0.1, min=1e-6),
    fpr: float = typer.Option(0.10, help="False-positive rate on real validation images the threshold is fixed at."),
    validation_fraction: float = typer.Option(0.3, help="Share of each bank's documents held out for the threshold."),
    max_patches_per_doc: int = typer.Option(16, min=1, help="Training patches per document (k of the DP unit)."),
    epsilon: float | None = typer.Option(None, min=0.01, help="Train with DP-SGD at this per-bank budget."),
    patch_size: int = typer.Option(32, min=16, help="Slicer patch size and stride (pixels)."),
    seed: int | None = typer.Option(None, help="Fix splits and initialisation (DP noise stays random)."),
    threshold_scope: str = typer.Option("bank", help="bank: each bank fixes its own threshold on its own validation "
                                                     "images, written to its own copy only; pooled: one threshold on "
                                                     "all banks' validation scores pooled (simulation/benchmark "
                                                     "only)."),
) -> None:
    """Train the detector across banks, as a simulation: every bank runs in this one process (each bank's rows in
    its own folder, only the workflow's messages between the in-process parties). Whoever runs it holds every
    bank's documents; a deployed fraud path (each bank extracting its own features, `sampan submit`) is not built.
    Each bank's threshold at --fpr goes to its own copy, WORK_DIR/<bank>/detector.json."""
    from sampan.errors import ConfigError
    from sampan.files import atomic_write_bytes, atomic_write_json, private_directory
    from sampan.fraud.aggregate import SCORE_FLOOR
    from sampan.fraud.federated import DpSettings, TrainSettings
    from sampan.fraud.slicer import SlicerConfig
    from sampan.fraud.training import bank_file, build_detector, detector_file, folder_banks, public_reference_bounds
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
    console.print(f"simulation: {len(inputs)} banks in this one process: {', '.join(_plain(b.name) for b in inputs)}")
    dp = None
    if epsilon is not None:
        console.print("DP: standardisation bounds from the public reference corpus (published seed)")
        dp = DpSettings(epsilon=epsilon, bounds=public_reference_bounds(slicer, size=demo_size if demo else 256))
    settings = TrainSettings(model=model, rounds=rounds, learning_rate=learning_rate,  # type: ignore[arg-type]
                             max_patches_per_doc=max_patches_per_doc)
    with _quiet_benign_accountant_notes():
        built = build_detector(inputs, settings=settings, dp=dp, fpr=fpr, validation_fraction=validation_fraction,
                               slicer=slicer, store_path=store or work_dir / "runs.db", work_dir=work_dir, seed=seed,
                               say=lambda text: console.print(_plain(text)), progress=_progress_printer(rounds),
                               threshold_scope=threshold_scope)  # type: ignore[arg-type]
    from sampan.fraud.corpus import PROVENANCE

    data_note = PROVENANCE if demo else (
        f"Trained on the labelled images of the bank folders {', '.join(b.origin for b in inputs)} (real/ and fake/ "
        "as each bank labelled them); Sampan makes no statement about how those documents were collected.")
    content = detector_file(built, data_note)
    atomic_write_json(out, content, indent=1)
    pooled = built.validation["pooled"]
    for name, point in built.thresholds.items():
        figures = built.validation["banks"][name]
        copy = private_directory(work_dir / name) / "detector.json"  # the bank's own folder (0700)
        atomic_write_bytes(copy, json.dumps(bank_file(built, name, data_note), indent=1).encode("utf-8"), mode=0o600)
        console.print(f"{_plain(name)}: own threshold {point.threshold:.4f} at FPR {fpr:g} on its "
                      f"{point.n_real_validation} real validation images; FPR {figures['fpr']:.3f}, FNR "
                      f"{_rate(figures['fnr'])}, AUC {_rate(figures['auc'])} (in its own copy only: "
                      f"{_plain(copy)})")
        if point.threshold <= SCORE_FLOOR * (1 + 1e-6) and built.detector.aggregation != "soft_or":
            console.print(f"[yellow]warning:[/] {_plain(name)}'s threshold is the lowest score the detector gives: "
                          "with it no image can be judged fake (more or other training documents, or a larger "
                          "--fpr, are needed)")
    scope = "each bank's own threshold" if built.thresholds else \
        f"pooled threshold {built.detector.threshold:.4f} (simulation: validation scores pooled)"
    console.print(f"{scope} at FPR {fpr:g}; validation over all banks (simulation summary, in no file"
                  f"{'' if built.thresholds else ' but the pooled one'}): FPR {_rate(pooled['fpr'])}, FNR "
                  f"{_rate(pooled['fnr'])}, AUC {_rate(pooled['auc'])} ({pooled['real_images']} real, "
                  f"{pooled['fake_images']} fake images)")
    console.print(f"privacy: {_plain(built.result.privacy_unit)}")
    console.print(f"shared detector (model only{'' if built.thresholds else ', pooled threshold'}) written to "
                  f"{_plain(out)} (run {_plain(built.result.run_id)})")


def _rate(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def _load_detector(path: Path, bank: str | None = None) -> tuple[Any, dict[str, Any], Any]:
    """(Detector with the scanning bank's threshold, its provenance, the operating point) from a detector file,
    read with `Detector.load`'s rules (size cap, UTF-8, nesting); every error names the file."""
    from sampan.errors import ConfigError
    from sampan.fraud.detector import Detector, read_json_file
    from sampan.fraud.operating_point import select_operating_point

    source = f"detector file {str(path)!r}"
    data = read_json_file(path, source)
    detector = Detector.from_dict(data, source)
    provenance = data.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise ConfigError(f"{source}: field 'provenance' must be an object")
    detector, point = select_operating_point(detector, data, bank, source)
    return detector, provenance or {}, point


def _output_names(images: list[Path]) -> list[str]:
    """One output stem per image, distinct from every other (compared case-insensitively, for case-insensitive
    file systems): the file stem, or ``<stem>-<n>`` with the first n >= 2 not taken yet."""
    taken: set[str] = set()
    names = []
    for path in images:
        stem = path.stem or "image"
        name, n = stem, 1
        while name.casefold() in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name.casefold())
        names.append(name)
    return names


def _write_all(out: Path, files: list[tuple[str, bytes]]) -> None:
    """Write every output of one scan or none: each goes to a temporary file (0600) first, then all are renamed
    into place; on any failure the temporaries and the files this call already placed are removed."""
    from sampan.errors import ConfigError

    for name, _ in files:
        target = out / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise ConfigError(f"cannot write {str(target)!r}: it exists and is not a plain file")
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for name, data in files:
            tmp = out / f".{name}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            staged.append((tmp, out / name))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, target in staged:
            os.replace(tmp, target)
            placed.append(target)
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for target in placed:
            target.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the scan's outputs in {str(out)!r}: {exc}; nothing of this scan was "
                          "left there") from None


@fraud_app.command("scan")
def scan(
    images: list[Path] = typer.Argument(..., help="Image files to scan."),
    detector_path: Path = typer.Option(..., "--detector", "-d", help="A detector JSON from `sampan fraud train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <image>.json and <image>.html (made, or tightened, "
                                                    "0700: the reports embed the customers' documents)."),
    bank: str | None = typer.Option(None, "--bank", help="The scanning bank: its own threshold from the detector "
                                                         "file (may be left out when the file has one bank)."),
) -> None:
    """Scan images with your bank's threshold: a JSON verdict and an HTML report each; exit 10 when any image is
    judged fake."""
    from sampan.errors import DataError
    from sampan.files import private_directory
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
                                operating_point=point.to_dict(), model_sha256=detector.model_sha256())
        scanned.append((path, verdict, record, render_detection_report(record, image)))
    names = _output_names(images)
    files = [(f"{name}{ext}", data) for (_, _, record, html), name in zip(scanned, names, strict=True)
             for ext, data in ((".html", html.encode("utf-8")),
                               (".json", json.dumps(record, indent=1).encode("utf-8")))]
    created = not out.exists()
    private_directory(out)  # 0700: the reports embed the customers' documents
    try:
        _write_all(out, files)
    except Exception:
        if created:
            out.rmdir()  # left empty by _write_all
        raise
    console.print(f"operating point: {_plain(point.describe())}")
    found = 0
    for (path, verdict, _, _), name in zip(scanned, names, strict=True):
        found += verdict.is_fake
        word = "[bold red]FAKE[/]" if verdict.is_fake else "[green]real[/]"
        console.print(f"{word}  score {verdict.score:.4f} (threshold {verdict.threshold:.4f}, FPR "
                      f"{verdict.fpr:g})  {_plain(path)} -> {_plain(out / name)}.json/.html")
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
    from sampan.fraud.detector import load_image, read_json_file
    from sampan.fraud.report import check_record, write_detection_report

    what = f"verdict record {str(record_path)!r}"
    record = check_record(read_json_file(record_path, what, MAX_RECORD_BYTES), what)
    source = image if image is not None else Path(str(record["image"].get("path", "")))
    target = out if out is not None else record_path.with_suffix(".html")
    written = write_detection_report(target, record, load_image(source), image_name=str(source))
    console.print(f"report written to {_plain(written)} (0600: it embeds the document)")
