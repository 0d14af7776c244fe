"""R14-WEB-6: console pages with an integer id in the path answer 500 to an id beyond 64 bits.

Claim (COMMON rules, T2/T3): bad input gets a clear error, never a traceback or a 500. The API bounds every id
(`Path(ge=1, le=MAX_ID)`), but the console's `job_id: int`, `consortium_id: int`, `dataset_id: int`,
`version: int` are unbounded: SQLite raises OverflowError ("Python int too large to convert to SQLite INTEGER")
through the page (PostgreSQL: a NumericValueOutOfRange DataError)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from _console import make_console  # noqa: E402

HUGE = "9" * 25


def test_console_pages_answer_a_huge_id_with_a_clean_error(tmp_path: Path) -> None:
    console = make_console(tmp_path)
    console.world.user("ana", "analyst")
    signed_in = console.signed_in("ana", "a long password!")
    browser = TestClient(console.app, base_url="https://testserver", raise_server_exceptions=False)
    browser.cookies = signed_in.cookies
    statuses = {path: browser.get(path).status_code for path in (
        f"/console/jobs/{HUGE}", f"/console/consortia/{HUGE}", f"/console/datasets/{HUGE}",
        f"/console/models/m/{HUGE}")}
    assert all(code < 500 for code in statuses.values()), statuses
