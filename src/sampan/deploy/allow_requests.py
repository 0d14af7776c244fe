"""Per-request checks of a party's `[allow]` list: every request of a run against the list and the job the
party accepted, so a coordinator cannot announce one job and run another.

Threat model: a coordinator (or an operator driving it) opens a job the party agreed to (`sampan.deploy.allow.
check_job`) and then sends requests of another job — a fit without the announced DP or SecAgg, noise below the
party's floor, a DP3 party count that thins each party's noise share, a vertical model the job never
announced, or the insecure benchmark baseline. `check_request` refuses each such request, naming the rule.
What it cannot see: the coordinator's own intentions beyond the request's metadata; peer identities are
checked by `sampan.deploy.allow.PeerAllowList`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sampan.deploy.allow_checks import check_checks_request
from sampan.deploy.allow_horizontal import check_horizontal_request
from sampan.deploy.allow_kinds import SCORING_KINDS, SERVING_KINDS, VERTICAL_KINDS, VERTICAL_NOISE
from sampan.deploy.allow_section import _HORIZONTAL_JOBS, _VERTICAL_JOBS, AllowSection
from sampan.deploy.allow_vertical import check_vertical_job, check_vertical_noise

__all__ = ["SCORING_KINDS", "SERVING_KINDS", "VERTICAL_KINDS", "check_request"]


def check_request(
    allow: AllowSection | None, party: str, kind: str, meta: Mapping[str, Any], job: Mapping[str, Any] | None = None
) -> None:
    """Each request of a run is checked against the list and against the job this party accepted (`job`,
    as `check_job` saw it), so a coordinator cannot announce one job and run another:

    - a horizontal job answers only its own request kinds (`describe`, `stats`, `fit`, `evaluate`,
      `secagg_*`; `hgb.*` in a gbdt job, never where SecAgg is required or announced, a sketch only at the job's
      n_bins; a gbdt job no `fit`, `stats`, `impute_stats` or `secagg_*`); an evaluation job only
      `evaluate` (and `secagg_*` if it announced SecAgg); anything else is refused;
    - `bank_alone` only in a horizontal job that announced it, never where the list requires secure aggregation,
      with DP-SGD settings (at or above the floor) when the job announced DP or the list requires it;
    - `evaluate_groups` likewise (exactly the groups the job announced, never where SecAgg is required), noised
      (`group_dp`, at or above the floor) when the job announced DP or the list requires it;
    - `fit` carries exactly the DP mechanisms (DP2, DP3) the job announced, SecAgg if announced, the
      protections the list requires, noise at or above its floor, and a DP3 `parties` / `noise_parties`
      no larger than the job's party count (a larger one would thin each party's distributed noise share);
    - `evaluate` carries SecAgg when the list requires it or the job announced it; `stats` DP1 when the job
      announced any DP or the list requires DP1 or DP; `describe` the DP row count when the job announced DP
      or the list requires any DP; `impute_stats` its DP noise when the job announced DP (at or above the
      floor), never where the list requires SecAgg, well-formed (`sampan.deploy.allow_impute`); `secagg_*`
      steps only in a job that announced SecAgg;
    - a vertical job answers only `VERTICAL_KINDS` (never the insecure benchmark baseline `plr.*`), and of
      those the WOE / GBDT training requests only when the job announced that model; a scoring job only
      `SCORING_KINDS` (keys, its parts, joint scoring);
    - a job that announced DP on WOE counts (`woe_dp`) or GBDT histograms (`gbdt_dp`) answers `woe.sum` /
      `woe.finish` only at its epsilon or less and `vgb.setup` only at its `gbdt_hist_noise` or more;
    - each vertical histogram request (`woe.sum`, `woe.finish`, `vgb.setup`) carries the protections the
      list requires, at or above its noise floor. Vertical GBDT's floor needs this party's feature count
      (sigma / sensitivity): it is enforced in the handler by the party's `PartyPrivacyPolicy` built from
      this list (`privacy_policy`)."""
    if job is not None and job.get("workflow") == "checks":
        check_checks_request(party, kind, meta, job)
        return
    if job is not None and job.get("workflow") in _VERTICAL_JOBS:
        check_vertical_job(party, kind, meta, job)
    if kind in VERTICAL_NOISE:
        if allow is not None and (allow.require or allow.min_noise_multiplier):
            check_vertical_noise(allow, party, kind, meta)
        return
    if job is not None and job.get("workflow") not in _HORIZONTAL_JOBS:
        return
    check_horizontal_request(allow, party, kind, meta, job)  # `sampan.deploy.allow_horizontal`
