"""R14-CONSENT3-2: in a horizontal GBDT job the tree shape the agent enforces (`job["gbdt"]`: n_trees, max_depth,
n_bins — the bound on the bank's exact tree releases, `allow_requests` and `privacy.gbdt_dp`) is not compared
with the spec's model settings (`spec.model["settings"]`, what the `sampan consent approve` summary and the
rules read).

Claim (consent_spec_check.py): "every field one side reads and the other enforces is compared here (reviews
R14-CONSENT-4, R14-CONSENT2-1/6)". The R14-CONSENT2-6 fix compares `job["model"]` with the spec's kind and
an MLP's `hidden` with its settings, but not GBDT's shape: a coordinator shows 10 trees of depth 2 on 8 bins
and has the party enforce 1000 trees of depth 10 on 255 bins (more cut points reveal more order statistics of
the bank's rows; more, deeper trees more exact histograms).
Suggested fix: `check_spec` requires `job["gbdt"]` == the spec's model settings (n_trees, max_depth, n_bins
with the defaults `allow.job_description` resolves) for a horizontal GBDT job, and a job without `gbdt` is
refused (a missing shape means "unbounded" downstream).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import consent_federation, loans_spec, request_consent  # noqa: E402

from sampan.deploy.consent import JobSpec  # noqa: E402

TREES: dict[str, Any] = {"run": {"name": "trees", "workflow": "horizontal", "rounds": 1, "seed": 3},
                         "model": {"kind": "gbdt", "n_trees": 10, "max_depth": 2, "n_bins": 8},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_gbdt_shape_in_job_must_be_the_specs(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        victim = agents[names[0]]
        honest = loans_spec(TREES, names, victim.consent.served_columns("loans"), "run-t")
        raw = honest.model_dump(mode="json")
        assert raw["job"]["gbdt"]["n_bins"] == 8 and raw["model"]["settings"]["n_bins"] == 8
        raw["job"]["gbdt"].update({"n_trees": 1000, "max_depth": 10, "n_bins": 255})  # what the party enforces
        reply = request_consent(victim, JobSpec.model_validate(raw))
        assert reply.kind != "consent.approval", (
            "a spec showing 10 trees of depth 2 on 8 bins was approved while its job description lets the "
            "coordinator ask for 1000 trees of depth 10 on 255 bins")
