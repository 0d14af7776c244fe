"""R15-DATA-1 (fixed): a table file whose name holds `[`, `?` or `*` is that file, not a glob.

Attack / validation: a bank names its table `loans[2024].csv` (a literal file name; brackets are legal and
common in exported names) in `[data.loans] path`. The same folder holds `loans2.csv` (any file matching the
character class `[2024]`). Safe behaviour: the literal file, which exists, is the table (as before issue 15,
when `load_table` read exactly the named file), or at least an error saying the name is ambiguous. It
happened: `sources._files` treated any path containing `*?[` as a glob pattern, so `loans[2024].csv` matched
`loans2.csv` and that other table was loaded silently. Now a path that exists is read as itself; only a path
that does not exist is a pattern.
"""

from __future__ import annotations

from pathlib import Path

from sampan.data import TableSchema, load_table

SCHEMA = TableSchema(id="id", features=[{"name": "x"}])


def test_literal_name_with_brackets_is_the_table(tmp_path: Path) -> None:
    (tmp_path / "loans[2024].csv").write_text("id,x\nc1,1\nc2,2\n")
    (tmp_path / "loans2.csv").write_text("id,x\nz9,99\n")  # any neighbour matching the class [2024]
    data = load_table(tmp_path / "loans[2024].csv", SCHEMA, "bank")
    assert data.ids.tolist() == ["c1", "c2"], f"loaded {data.ids.tolist()} from another file"


def test_a_pattern_that_names_no_file_is_still_a_glob(tmp_path: Path) -> None:
    (tmp_path / "part-1.csv").write_text("id,x\nc1,1\n")
    (tmp_path / "part-2.csv").write_text("id,x\nc2,2\n")
    assert load_table(tmp_path / "part-*.csv", SCHEMA, "bank").ids.tolist() == ["c1", "c2"]
