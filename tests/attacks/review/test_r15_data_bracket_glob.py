"""R15-DATA-1: a table file whose name holds `[`, `?` or `*` is read as a glob: another file is loaded.

Attack / validation: a bank names its table `loans[2024].csv` (a literal file name; brackets are legal and
common in exported names) in `[data.loans] path`. The same folder holds `loans2.csv` (any file matching the
character class `[2024]`). Safe behaviour: the literal file, which exists, is the table (as before issue 15,
when `load_table` read exactly the named file), or at least an error saying the name is ambiguous. What
happens: `sources._files` treats any path containing `*?[` as a glob pattern (`glob.glob`), so `loans[2024].csv`
matches `loans2.csv` and that other table is loaded and validated silently; a learner, PSI and scoring see the
wrong customers. (With no such neighbour the existing file is refused: "no file matches the pattern".)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.data import TableSchema, load_table

SCHEMA = TableSchema(id="id", features=[{"name": "x"}])


@pytest.mark.xfail(strict=True, reason="R15-DATA-1: a literal file name with [..] is globbed; a neighbour "
                                       "file is loaded instead")
def test_literal_name_with_brackets_is_the_table(tmp_path: Path) -> None:
    (tmp_path / "loans[2024].csv").write_text("id,x\nc1,1\nc2,2\n")
    (tmp_path / "loans2.csv").write_text("id,x\nz9,99\n")  # any neighbour matching the class [2024]
    data = load_table(tmp_path / "loans[2024].csv", SCHEMA, "bank")
    assert data.ids.tolist() == ["c1", "c2"], f"loaded {data.ids.tolist()} from another file"
