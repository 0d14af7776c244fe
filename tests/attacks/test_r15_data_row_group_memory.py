"""R15-DATA-7 (fixed): a Parquet file with large row groups is decoded a whole row group at a time: memory follows the
writer's row-group size, not the loader's batch.

Validation (issue 15 item 1, "memory proportional to a batch"): `stream.load_source` promises a peak of "the
result plus about one batch", and tests/test_data_stream_memory.py checks it (compact table + 96 MiB) on a file
written with 65,536-row groups. Real files are not written that way: pyarrow/pandas write 1Mi-row groups
(64Mi before pyarrow 15: one group for most bank tables), Spark 128 MB groups. Safe behaviour: the same bound
for the same rows whatever the row-group size. It happened: `ParquetSource.parts` called
`pf.read_row_group(group)`, which decodes the whole group (every column, float64) before cutting batches
(~240 MiB over the compact table at 600,000 rows x 30 features in one group; ~2.4 GB at 10M rows). Now a group
larger than a batch is read with `iter_batches` on that group in small slices through a small read buffer
(~85 MiB over here, vs ~45 MiB with 65,536-row groups: each column's dictionary page is held while its group
is read). The child's peak is VmHWM (its own memory), not ru_maxrss, which after a vfork+exec starts at the
parent's (pytest's) own peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS, FEATURES = 600_000, 30

CHILD = r"""
import json, resource, sys
import numpy as np
from sampan.data import TableSchema, load_table
def rss():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:"))
schema = TableSchema(id="id", label="y", features=[f"x{j}" for j in range(30)])
base = rss()
data = load_table(sys.argv[1], schema, "bank", dtype=np.float32)
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
ids = data.ids.nbytes + sum(sys.getsizeof(s) for s in data.ids)
print(json.dumps({"delta": peak - base, "X": data.X.nbytes, "ids": ids}))
"""


def test_one_big_row_group_keeps_the_batch_bound(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cols = {"id": pa.array([f"C{i:010d}" for i in range(ROWS)]), "y": pa.array(rng.integers(0, 2, ROWS))}
    cols.update({f"x{j}": pa.array(rng.standard_normal(ROWS)) for j in range(FEATURES)})
    path = tmp_path / "bank.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=ROWS)  # one row group, as many writers produce
    del cols
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True, capture_output=True, text=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    compact = got["X"] + got["ids"]
    assert got["delta"] <= compact + 96 * 2**20, \
        f"peak {got['delta'] >> 20} MiB over a compact table of {compact >> 20} MiB"
