"""The model-validation pack (issue 13, item 9): HTML and PDF per registered model, from the store alone; every
section present and readable (no 'nan', no empty chart), for a horizontal and a vertical model."""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sampan.cli import app
from sampan.config import parse_config
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.runtime.validation_pack import build_validation_pack, write_validation_pack
from sampan.vertical.job import VerticalJob
from sampan.vertical.training import VerticalLRConfig

SECTIONS = ["Model", "Data lineage and fingerprints", "Code version", "Performance", "Out-of-time validation",
            "Stability", "Calibration", "Fairness by group", "Limitations", "Privacy receipt"]


def pdf_text(data: bytes) -> str:
    """The text drawn on a reportlab PDF's pages (its content streams are ASCII85 + Flate encoded)."""
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    chunks = []
    for match in re.finditer(rb"/Filter \[ /ASCII85Decode /FlateDecode \][^>]*>>\s*stream\r?\n(.*?)endstream",
                             data, re.S):
        body = match.group(1).strip()
        chunks.append(zlib.decompress(base64.a85decode(body.removesuffix(b"~>"))))
    return b"".join(chunks).decode("latin-1")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("pack")
    store = Store.open(f"sqlite:///{root / 'runs.db'}")
    start_run(parse_config({"run": {"name": "hz", "rounds": 2, "seed": 3, "report_dir": str(root / "rep")},
                            "source": {"kind": "consortium", "n_smes": 600}}), store)
    start_run(VerticalJob(name="vt", label_holder="bank", partners=("payments", "delivery"), models=("lr",),
                          lr=VerticalLRConfig(epochs=1), seed=11, source={"kind": "consortium", "n_smes": 4000,
                                                                             "seed": 4}), store)
    return store


@pytest.mark.parametrize("name", ["hz", "vt:bank"])
def test_pack_has_every_section_in_html_and_pdf(store: Store, tmp_path: Path, name: str) -> None:
    html_path, pdf_path = write_validation_pack(store, name, tmp_path)
    html = html_path.read_text()
    for i, title in enumerate(SECTIONS, 1):
        assert f"{i}. {title}</h2>" in html, title
    assert not re.search(r"\bnan\b", html, re.I) and "No data" not in html and not re.search(r"\bNone\b", html)
    text = pdf_text(pdf_path.read_bytes())
    for i, title in enumerate(SECTIONS, 1):
        assert f"({i}. {title})" in text, title


def test_horizontal_pack_reads_the_run(store: Store) -> None:
    pack = build_validation_pack(store, "hz")
    by_title = {s.title: s for s in pack.sections}
    performance = by_title["Performance"]
    assert performance.tables[0].rows[0][0] == "AUC" and 0.5 < float(performance.tables[0].rows[0][1]) <= 1
    assert [c.kind for c in performance.charts] == ["roc"] and by_title["Calibration"].charts
    lineage = by_title["Data lineage and fingerprints"]
    assert len(lineage.tables[0].rows) == 3  # three banks, row counts as released
    assert all(len(row[1]) == 64 for row in lineage.tables[1].rows)  # SHA-256 of schema, config, arrays
    assert any("Rare bads" in p or "Small holdout" in p for p in by_title["Limitations"].paragraphs)
    receipt = by_title["Privacy receipt"]
    assert receipt.paragraphs[0].startswith("Differential privacy: off") and receipt.tables


def test_cli_writes_the_pack_and_names_a_missing_model(store: Store, tmp_path: Path) -> None:
    url = str(store.engine.url)
    result = CliRunner().invoke(app, ["models", "pack", "hz", "--out", str(tmp_path), "--store", url])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hz-v1.html").exists() and (tmp_path / "hz-v1.pdf").exists()
    missing = CliRunner().invoke(app, ["models", "pack", "absent", "--out", str(tmp_path), "--store", url])
    assert missing.exit_code != 0 and "absent" in missing.output and "Traceback" not in missing.output
