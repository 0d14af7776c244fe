"""Found by the browser tests: a job whose run config the coordinator refuses at start (a `ConfigError`, not a
control-plane error) showed the API's raw JSON in the browser. The console now answers with its own page: the job
page with the coordinator's reason (and any other page with its error page). Runs over the FakeGateway (fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _console import post, seeded, wizard_form
from _web_plane import BANKS

from sampan.config import ConfigError

REASON = "privacy: data.standardize = true needs [privacy.dp1] (public bounds per feature)"


def test_a_start_the_coordinator_refuses_is_shown_on_the_job_page(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    console, _ = seeded(tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise ConfigError(REASON)

    monkeypatch.setattr(console.world.plane.gateway, "start", refuse)
    admin = console.signed_in("admin2")
    made = post(admin, "/console/jobs/new", "/console/jobs", wizard_form("refused-at-start"))
    job_id = int(str(made.url).rsplit("/", 1)[1])
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    for bank in BANKS:
        approved = post(console.signed_in(f"{bank}-op"), "/console/approvals", f"/console/approvals/{job_id}/approve",
                        {})
        assert approved.status_code == 200, approved.text[-400:]
    started = post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/start", {})
    assert started.status_code == 400
    assert started.headers["content-type"].startswith("text/html")
    assert 'data-test="job-error"' in started.text and "cannot start this job" in started.text
    assert "data.standardize = true needs [privacy.dp1]" in started.text
    assert 'data-test="start-job"' in started.text  # still approved: fix the cause and start again
