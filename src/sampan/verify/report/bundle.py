"""Write every output of an evaluation into one folder at once: all files appear together or none do."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sampan.errors import ConfigError
from sampan.files import atomic_directory
from sampan.verify.report.html import render_html
from sampan.verify.report.junit import render_junit
from sampan.verify.results import Evaluation

__all__ = ["OUTPUT_FILES", "write_all"]

OUTPUT_FILES = frozenset({"results.json", "manifest.json", "report.html", "report.pdf", "junit.xml"})


def _pdf_available() -> bool:
    try:
        import reportlab  # type: ignore[import-untyped]  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def write_all(evaluation: Evaluation, out_dir: str | os.PathLike[str], *, pdf: bool | None = None) -> list[Path]:
    """results.json, manifest.json, report.html, junit.xml and (with reportlab) report.pdf into ``out_dir``.

    Everything is rendered first, into a staging folder beside ``out_dir``, then published by one rename; an
    existing ``out_dir`` is replaced only if it holds nothing but these files (an earlier report). ``pdf`` None
    writes the PDF when reportlab is installed; True requires it (ConfigError without it).
    """
    files = {
        "results.json": evaluation.to_json(),
        "manifest.json": json.dumps(evaluation.to_dict()["manifest"], indent=2) + "\n",
        "report.html": render_html(evaluation),
        "junit.xml": render_junit(evaluation),
    }
    pdf_bytes = None
    if pdf or (pdf is None and _pdf_available()):
        from sampan.verify.report.pdf import render_pdf

        pdf_bytes = render_pdf(evaluation)
    target = Path(out_dir)
    try:
        with atomic_directory(target, replaceable=OUTPUT_FILES) as staging:
            for name, text in files.items():
                (staging / name).write_text(text, encoding="utf-8")
            if pdf_bytes is not None:
                (staging / "report.pdf").write_bytes(pdf_bytes)
            for child in staging.iterdir():
                os.chmod(child, 0o644)
    except FileExistsError as exc:  # the folder holds someone else's files: never replace those
        raise ConfigError(f"--out {target}: {exc}") from None
    except PermissionError as exc:
        raise ConfigError(f"--out {target}: cannot write there ({exc.strerror})") from None
    return sorted(target / name for name in [*files, *(["report.pdf"] if pdf_bytes is not None else [])])
