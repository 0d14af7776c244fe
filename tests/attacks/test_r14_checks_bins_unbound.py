"""R14-CHECKS-4: the bounds, bins and columns of a ``checks.histogram`` request are the coordinator's, never checked
against the job the party approved. The job a party is told carries none of them (`checks_job`,
`sampan.deploy.allow.job_description`), `sampan.deploy.allow_checks` and the handler accept any list of
[name, low, high] entries with up to 100 bins each. In a job without DP (whose receipt lists "counts per public bin"
of the schema's bounds, 10 bins) a coordinator tiles a column with narrow windows and reads its exact empirical
distribution at 0.01 resolution, one request. A vertical checks job (which never compares histograms) answers
``checks.histogram`` too, so a partner's feature distributions leave in a job approved as "schema and id overlap".

Fixed: the job carries its histogram bins, columns and bounds (`sampan.checks.terms.job_terms`); the agent
(`check_checks_request`) and the party (`check_histogram`) refuse anything else, a column asked twice, and any
histogram in a vertical job."""

from __future__ import annotations

import _checks_parties as fixture
import numpy as np
import pytest

from sampan.checks.capability import CHECKS, checks_job
from sampan.core.capability import PartySetup
from sampan.deploy.allow_checks import check_checks_request
from sampan.deploy.allow_section import JobRefused
from sampan.wire import Message


def test_a_histogram_request_is_held_to_the_jobs_columns_bounds_and_bins() -> None:
    data = fixture.banks()["bank_0"]
    job = checks_job(fixture.config({}))  # no DP: the receipt says 10 bins over the schema's public bounds
    app = CHECKS.party_app(PartySetup("bank_0", data, job, options={"schema": fixture.SCHEMA}))
    windows = [["age", float(low), float(low) + 1.0] for low in range(18, 80)]  # 62 windows x 100 bins = 0.01 wide
    meta = {"columns": windows, "bins": 100}
    try:
        check_checks_request("bank_0", "checks.histogram", meta, job)
        reply = app.handle(Message("r1", 4, "coordinator", "bank_0", "checks.histogram", {}, meta))
    except JobRefused:
        return
    if reply.kind == "error":
        return
    counts = np.asarray(reply.arrays["counts"])
    ages = data.X[:, 0]
    exact = 0
    for (_, low, _), row in zip(windows, counts, strict=True):  # inner bins: ages in [low + k/100, low + (k+1)/100)
        truth = np.histogram(ages, bins=low + np.arange(1, 100) / 100.0)[0]
        exact += int(np.array_equal(row[1:99], truth))
    # the coordinator now holds every customer's age to 0.01 (about 6000 bins), not a 10-bin histogram
    assert exact < len(windows), f"{exact} of {len(windows)} windows give exact counts at 0.01 resolution"


def test_a_vertical_checks_job_answers_no_histogram() -> None:
    job = {"workflow": "checks", "vertical": True, "label_holder": "bank", "parties": ["bank", "delivery"]}
    with pytest.raises(JobRefused):
        check_checks_request("delivery", "checks.histogram", {"columns": [["orders", 0.0, 100.0]], "bins": 100}, job)
