"""REVF-10 (fixed), as found: `sampan fraud train` is a simulation of the federation, and it does not say so.

The command reads EVERY bank's image folder in one process on one machine (`training.folder_banks`), extracts every
bank's patch features there, runs the horizontal workflow with in-process parties, and fixes every bank's threshold in
that same process. There is no deployed fraud path (no per-bank feature extraction command, no deployed run producing a
detector file). Yet its help says "Train the detector across banks (federated)" and the module/option texts label only
the POOLED threshold scope a "simulation", implying the default bank scope keeps documents and validation scores at the
banks; the detector file's threshold_note says "no validation score left a bank". Between real banks, whoever runs this
command holds every bank's customer documents.
"""

from __future__ import annotations

from typer.testing import CliRunner

from sampan.cli import app

runner = CliRunner()
WORDS = ("one process", "in-process", "in process", "same machine", "simulates", "simulated banks", "simulation of")


def test_train_help_says_every_bank_runs_in_this_process() -> None:
    result = runner.invoke(app, ["fraud", "train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.lower().replace("\u2502", " ").split())  # rich's box edges out
    assert any(word in text for word in WORDS), text[:400]
