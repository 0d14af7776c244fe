"""Write the two party files of examples/taiwan_vertical.toml from ../shared/data (never committed)."""

import csv
from pathlib import Path

from sampan.data.public import load_taiwan_default, shared_data_dir

root = shared_data_dir()
if root is None:
    raise SystemExit("../shared/data not found (or set SAMPAN_SHARED_DATA)")
data = load_taiwan_default(root / "taiwan_default")
out = Path(__file__).parent / "data"
out.mkdir(exist_ok=True)
groups = {"taiwan_bank.csv": [c for c in data.feature_names if not c.startswith(("BILL_AMT", "PAY_AMT"))],
          "taiwan_card_issuer.csv": [c for c in data.feature_names if c.startswith(("BILL_AMT", "PAY_AMT"))]}
for name, cols in groups.items():
    idx = [data.feature_names.index(c) for c in cols]
    with open(out / name, "w", newline="") as fh:
        w = csv.writer(fh)
        label = ["default.payment.next.month"] if name == "taiwan_bank.csv" else []
        w.writerow(["ID", *cols, *label])
        for i in range(len(data)):
            w.writerow([data.ids[i], *[repr(float(v)) for v in data.X[i, idx]], *([int(data.y[i])] if label else [])])
    print("wrote", out / name)
