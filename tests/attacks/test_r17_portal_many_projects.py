"""R17-PORTAL-11: an applicant creates projects without end, and every staff page pays for them.

Attack (a malicious applicant): `Portal.create_project` has no limit (the rate limits cover qualification checks
and evaluation starts only). Each project costs the attacker one small POST (~4 ms here) and the portal a row, a
sealed token and a signed audit entry for ever. `Portal.projects` lists every project with three more queries
each and no paging: the reviewers' and admins' /projects page (all projects) grows linearly, about 1 ms per
project on SQLite here, so tens of thousands of junk projects make the staff's pages take minutes, and the audit
page's chain verification grows with the entries. Names are up to 200 characters, so the lists fill with the
attacker's text too.

FIXED: `RateLimits.projects_per_applicant` (default 25; counted under a locked key, so parallel requests cannot
pass it) refuses the next project with Conflict naming the cap, audited "portal.project_refused"; `projects()` is
paged (`page`, `per_page`, `project_count`) and the /projects page shows 50 per page with a pager.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

from _core_fixtures import TOKEN, applicant, make_portal  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402
from sampan.web.errors import ControlPlaneError  # noqa: E402

MANY = 300


def test_an_applicant_cannot_create_projects_without_end(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        portal = make_portal(store, tmp_path / "portal")
        mallory = applicant(portal, "mallory@junk.example")
        refused = 0
        for i in range(MANY):
            try:
                portal.create_project(mallory, f"junk {i} " + "x" * 180, f"https://junk{i}.example/", "", TOKEN)
            except ControlPlaneError:
                refused += 1
        assert refused == MANY - 25, f"{MANY - refused} of {MANY} projects were created"
    finally:
        store.close()
