"""Review (issue 13) of bad input to monitoring and the validation pack (`sampan monitor ...`, `sampan models
pack`): a clear error (a `sampan.errors` type naming the file), never an internal error.

R13-IN-1: a current-population / outcomes CSV that is not UTF-8 (a Latin-1 export, common for bank files with
accented names) gives "internal error: UnicodeDecodeError ..." (`runtime/backtest.py` `read_columns` catches
OSError only), in `monitor drift`, `backtest` and `challenger`.
R13-IN-2: a damaged party ledger file (`--ledger`) gives "internal error: JSONDecodeError" from `charge_party`
(`runtime/monitoring.py`), not an error naming the ledger file (contrast `PartyDPState.load_evaluated`).
R13-IN-3: `models pack --out` naming an existing file gives "internal error: FileExistsError".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.errors import SampanError
from sampan.runtime.backtest import read_columns
from sampan.runtime.monitoring import DriftReference, drift_release


def test_a_latin1_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "current.csv"
    path.write_bytes("id,x1\nJos\xe9,0.5\n".encode("latin-1"))
    with pytest.raises(SampanError, match="current.csv"):
        read_columns(path)


def test_a_damaged_ledger_is_a_clear_error(tmp_path: Path) -> None:
    ledger = tmp_path / "bank_0.ledger.json"
    ledger.write_text('{"parties": {"bank_0"')  # cut short, e.g. a full disk
    reference = DriftReference((0.1, 0.5), {})
    with pytest.raises(SampanError, match="bank_0.ledger.json"):
        drift_release("bank_0", reference, reference_scores=np.full(10, 0.3), current_scores=np.full(10, 0.3),
                      noise_multiplier=1.0, ledger_path=ledger)


def test_pack_out_naming_a_file_is_a_clear_error(tmp_path: Path) -> None:
    from sampan.report.pack import ValidationPack, write_pack_html

    target = tmp_path / "packs"
    target.write_text("not a folder")
    with pytest.raises(SampanError, match="packs"):
        write_pack_html(ValidationPack("m", 1, "now", []), target / "m-v1.html")
