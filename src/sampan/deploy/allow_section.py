"""The `[allow]` section of party.toml (`AllowSection`) and the refusal it raises (`JobRefused`).

Shared by the job checks (`sampan.deploy.allow`: checked once, when a job is opened) and the per-request
checks (`sampan.deploy.allow_requests`: every request of a run, against the job the party accepted); the
threat model and the defaults are described in `sampan.deploy.allow`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sampan.errors import PartyError

__all__ = ["AllowSection", "JobRefused", "PROTECTIONS"]

PROTECTIONS = ("secure_aggregation", "dp", "dp1", "dp2", "dp3", "woe_dp", "gbdt_dp")
# workflows whose requests are checked as vertical (resp. horizontal) ones
_VERTICAL_JOBS = frozenset({"vertical", "scoring", "serving"})
_HORIZONTAL_JOBS = frozenset({"horizontal", "evaluation"})


class JobRefused(PartyError, PermissionError):
    """This party's allow-list refuses the job; the message names the rule and the value."""

    def __init__(self, party: str, rule: str, reason: str) -> None:
        super().__init__(f"party {party!r} refuses this job ({rule}): {reason}")
        self.party, self.rule, self.reason = party, rule, reason


def _ecdh_only() -> list[Literal["ecdh", "rr22"]]:
    """The default PSI backends a party accepts: ECDH only (RR22 needs the party's own opt-in)."""
    return ["ecdh"]


class AllowSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operators: list[str] | None = Field(None, description="operators whose jobs are accepted; default any")
    workflows: list[Literal["horizontal", "vertical", "scoring", "evaluation", "synthesis", "serving",
                            "checks"]] | None = Field(
        None, description="default any (but 'serving', which must be listed, with serving_models)")
    serving_models: list[str] | None = Field(None, description="the trained vertical runs a serving job (the "
                                             "bank's `sampan serve` session) may answer for; default none")
    partners: list[str] | None = Field(None, description="parties this one may train with; default: any in "
                                       "horizontal runs, none in vertical runs")
    label_holders: list[str] | None = Field(None, description="parties this one accepts as the label holder (the "
                                            "bank) of a vertical run; default: itself only")
    datasets: list[str] | None = Field(None, description="which [data.<name>] jobs may use; default any")
    columns: list[str] | None = Field(None, description="feature columns a job may use; default any of the binding")
    require: list[Literal["secure_aggregation", "dp", "dp1", "dp2", "dp3", "woe_dp", "gbdt_dp"]] = Field(
        default_factory=list, description="protections every job must use (woe_dp: DP on federated WOE counts; "
        "gbdt_dp: noise on vertical GBDT histograms; 'dp' means DP2 or DP3 for horizontal training and also "
        "demands noise on every vertical histogram release)")
    min_noise_multiplier: float | None = Field(None, gt=0, description="least noise multiplier of every DP "
                                               "mechanism of a job (after its schedule); 'auto' is refused")
    applicants_dir: str | None = Field(None, min_length=1, description="the folder on this bank's machine whose "
                                       "files a scoring job may name as its applicants file (symlinks resolved, "
                                       "regular files only); default none: no job makes it read a file")
    applicant_id_columns: list[str] | None = Field(None, description="the id columns an applicants file may be read "
                                                   "by; default any but this party's schema columns")
    max_epsilon: float | None = Field(None, ge=0, description="most epsilon one job may reserve from a dataset of "
                                      "this party (hard limit; DP without a stated epsilon is refused); default "
                                      "any")
    psi_backends: list[Literal["ecdh", "rr22"]] = Field(
        default_factory=_ecdh_only, description="PSI backends a vertical job may run with this party; "
        "default ECDH only: RR22 (spu, semi-honest only, reveals the longest id length, a loopback link on this "
        "host) runs only where the party lists 'rr22' itself (review R15-RR22-8)")
    min_contributors: int | None = Field(None, ge=3, description="least number of contributors a secure "
                                         "aggregation job may sum (its secure_aggregation.min_contributors); the "
                                         "party also enforces it itself in every unmasking; default 3")
