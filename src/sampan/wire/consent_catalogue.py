"""Catalogue of the consent messages (`sampan.deploy.agent_consent`): every field, and who sees it.

Keys are `<sender>:<kind>` as in `sampan.wire.catalogue`. Consent carries no data-derived value except a
dataset's row count and its budget status, both visible to the coordinator (the console shows them to
consortium members): schemas and counts only, never rows. `deploy.open_run` carries the approved spec and
every party's approval alongside the job description.
"""

from __future__ import annotations

from sampan.wire.catalogue import Field, MessageSpec

__all__ = ["CONSENT_KINDS", "consent_catalogue"]

CONSENT_KINDS = ("consent.request", "consent.approval", "consent.rule_added", "consent.catalogue",
                 "consent.release", "consent.released")


def consent_catalogue() -> dict[str, MessageSpec]:
    """Every consent message, keyed by `<sender>:<kind>`."""
    spec = Field("meta.spec.*", "public", what="the job spec (workflow, code version, parties, per party dataset "
                 "and columns read, model, rounds, privacy budget per level, protections, job description, config "
                 "hash): the same for any data")
    approval = Field("meta.approval.*", "public", what="the party's signed approval: spec hash, job id, party, "
                     "dataset, who decided, when, the (epsilon, delta) it reserved, its certificate, signature")
    specs = [
        MessageSpec("consent.request", "coordinator", (
            spec, Field("meta.decided_by", "public", what="person:<user>, rule:<id> or operator:<name>"),
            Field("meta.rule.*", "public", what="a standing rule relayed from the console"))),
        MessageSpec("consent.approval", "party", (approval,)),
        MessageSpec("consent.rule_added", "party", (Field("meta.rule.*", "public", what="the rule as stored"),)),
        MessageSpec("consent.catalogue", "coordinator", ()),
        MessageSpec("consent.catalogue", "party", (
            Field("meta.datasets.*.name", "public", what="dataset name"),
            Field("meta.datasets.*.columns", "public", what="declared columns and kinds"),
            Field("meta.datasets.*.label", "public", what="label column name"),
            Field("meta.datasets.*.id", "public", what="id column name"),
            Field("meta.datasets.*.rows", "visible", role="coordinator", what="row count, exact"),
            Field("meta.datasets.*.budget.*", "visible", role="coordinator",
                  what="lifetime budget: total, spent, reserved, remaining, history of reservations and charges"))),
        MessageSpec("consent.release", "coordinator", (
            Field("meta.job_id", "public", what="the job whose approval the party withdraws (it never started)"),
            Field("meta.decided_by", "public", what="who withdrew it: person:<user> or the control plane"))),
        MessageSpec("consent.released", "party", (
            Field("meta.job_id", "public", what="the job"),
            Field("meta.voided", "public", what="how many stored approvals of the job were voided"),
            Field("meta.released.*", "visible", role="coordinator",
                  what="the (epsilon, delta) reservation returned to the dataset's budget"))),
        MessageSpec("deploy.open_run", "coordinator", (
            spec, Field("meta.approvals.*", "public", what="every party's signed approval"))),
    ]
    return {f"{s.sender}:{s.kind}": s for s in specs}
