"""Consent bound to the job: the job spec and its hash, signed approvals, standing rules, a party's records.

The party side is `sampan.deploy.agent_consent`; the coordinator side is `Coordinator.request_approval`,
`party_catalogue` and `submit_approved`.
"""

from sampan.deploy.consent.approval import (
    Approval,
    ConsentRefused,
    Signer,
    approval_payload,
    sign_approval,
    verify_approval,
)
from sampan.deploy.consent.rules import StandingRule, allow_epsilon_reason, allow_reasons, matches, rule_from_allow
from sampan.deploy.consent.spec import JobSpec, PartyData, PrivacyPlan, canonical_json, config_sha256, job_spec
from sampan.deploy.consent.store import ConsentStore

__all__ = [
    "Approval", "ConsentRefused", "ConsentStore", "JobSpec", "PartyData", "PrivacyPlan", "Signer", "StandingRule",
    "allow_epsilon_reason", "allow_reasons", "approval_payload", "canonical_json", "config_sha256", "job_spec",
    "matches", "rule_from_allow", "sign_approval", "verify_approval",
]
