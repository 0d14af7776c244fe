"""The issue-15 scale harness (bench/_scale.py, bench/scale_bench.py) at a few thousand rows.

The harness produces the published scale figures, so its parts are checked here: the tables it writes
(block by block, ids and label as documented), the memory sampler (it sees a child's allocation), the
growth exponent, and one end-to-end measured run in a fresh process tree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _scale  # noqa: E402
import scale_bench  # noqa: E402


def test_tables_are_written_in_blocks_with_the_documented_columns(tmp_path: Path) -> None:
    paths = _scale.write_party_tables(tmp_path, 5_000, {"bank": 3, "partner": 4}, block_rows=1_024)
    bank, partner = pq.read_table(paths["bank"]), pq.read_table(paths["partner"])
    assert bank.schema.names == ["id", "bank_f00", "bank_f01", "bank_f02", "label"]
    assert partner.schema.names == ["id", *(f"partner_f{j:02d}" for j in range(4))]
    assert str(bank.schema.field("bank_f00").type) == "float"  # float32
    assert bank.column("id").to_pylist()[:2] == ["C000000000", "C000000001"]
    assert bank.column("id").to_pylist() == partner.column("id").to_pylist()
    assert pq.ParquetFile(paths["bank"]).metadata.num_row_groups == 5  # one per block: never the whole table
    y = bank.column("label").to_numpy()
    assert 0.2 < y.mean() < 0.45
    # the label follows the logistic model over both parties' features: the true logit ranks it well
    x = np.column_stack([bank.column(f"bank_f{j:02d}").to_numpy() for j in range(3)]
                        + [partner.column(f"partner_f{j:02d}").to_numpy() for j in range(4)])
    logit = x @ _scale._coefficients(7, 0)
    pos, neg = logit[y == 1], logit[y == 0]
    assert (pos[:, None] > neg[None, :]).mean() > 0.6
    assert not list(tmp_path.glob("*.part"))


def test_horizontal_tables_have_disjoint_ids(tmp_path: Path) -> None:
    paths = _scale.write_horizontal_tables(tmp_path, 1_000, 3, 2)
    ids = [set(pq.read_table(p).column("id").to_pylist()) for p in paths.values()]
    assert not ids[0] & ids[1] and len(ids[0]) == len(ids[1]) == 1_000
    assert pq.read_table(paths["bank1"]).schema.names == ["id", "f00", "f01", "f02", "label"]


def test_ids_are_fixed_width() -> None:
    assert _scale.ids_for(999_999_998, 1_000_000_000).tolist() == [b"C999999998", b"C999999999"]
    with pytest.raises(ValueError):
        _scale.ids_for(0, 10**9 + 1)


def test_growth_exponent_and_table() -> None:
    sizes = [1e6, 5e6, 1e7]
    assert _scale.growth_exponent(sizes, [2 * s for s in sizes]) == pytest.approx(1.0)
    assert _scale.growth_exponent(sizes, [s**2 for s in sizes]) == pytest.approx(2.0)
    assert _scale.growth_exponent(sizes, [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    table = _scale.markdown_table(["workload", "rows"], [["lr", 1_000_000]])
    assert table.splitlines() == ["| workload | rows |", "|---|---:|", "| lr | 1,000,000 |"]


def test_sampler_sees_a_child_process_allocation() -> None:
    code = "import numpy, time; a = numpy.ones(40_000_000); time.sleep(0.5)"  # 320 MB, touched
    with _scale.PeakSampler(interval=0.02) as mem:
        subprocess.run([sys.executable, "-c", code], check=True)
    peaks = mem.result()
    child = max(v for k, v in peaks.per_process.items() if not k.startswith(f"{mem.root} "))
    assert child > 300e6
    assert peaks.simultaneous_rss >= child * 0.9 and peaks.sum_of_peaks >= child
    assert peaks.simultaneous_pss is None or peaks.simultaneous_pss > 300e6


def test_one_measured_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPAN_SCALE_DATA", str(tmp_path / "data"))
    out = tmp_path / "scale.json"
    scale_bench.main(["--only", "workflow_hlr", "--sizes", "3000", "--out", str(out), "--timeout", "120"])
    (run,) = json.loads(out.read_text())["runs"]
    assert run["status"] == "ok", run.get("stderr_tail")
    assert run["seconds_per_unit"] > 0 and run["unit"] == "round"
    assert run["memory"]["per_process_mib"]  # the child at least (its party processes live < 0.1 s at 3k rows)
    assert run["largest_worker_peak_mib"] > 50
    assert run["result"]["auc"] > 0.6
    bigger = json.loads(json.dumps(run)) | {"rows": 6000}
    bigger["seconds_per_unit"] *= 2
    text = scale_bench.report([run, bigger])
    assert "workflow_hlr: time growth exponent <= 1.1 (3,000..6,000 rows) | 1.00 | met" in text
