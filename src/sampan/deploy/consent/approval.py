"""`Approval`: a party's signed consent to exactly one `JobSpec`, and its check by every other party.

Threat model: the coordinator relays approvals between parties and may be malicious: it may alter a spec
after it was approved, replay an approval of another job, forge a signature, attach one party's
certificate to another's approval, or drop an approval. The approval signs, with the party's organisation
key (its mutual-TLS certificate key, or an HSM-held key: anything with `.sign(bytes)` and
`.certificate_pem`), a domain-separated canonical payload holding the spec hash, the job id, the party,
its dataset, who decided, when, and the (epsilon, delta) it reserved. `verify_approval` checks the hash
against the spec every party recomputes itself, the party's name in the certificate (consortium CA, CRL,
role) and the signature; a party does not run with partners whose approval does not verify. Not covered:
a stolen organisation key (revoke it: the CRL is checked at every verification).

What an approval reveals: the spec (already known to every party of the job), the approving party's
certificate (public in the consortium) and the budget it reserved for the job (not its remaining budget).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from sampan.deploy.consent.spec import JobSpec, canonical_json
from sampan.errors import PartyError

__all__ = ["Approval", "ConsentRefused", "Signer", "approval_payload", "sign_approval", "verify_approval"]

_DOMAIN = b"sampan/consent-approval/v1\n"


class ConsentRefused(PartyError, PermissionError):
    """A party refuses (or cannot give) consent to a job; the message names the party and the reason."""

    PREFIX = "does not consent to this job: "

    def __init__(self, party: str, reason: str, rule: str | None = None) -> None:
        prefix = f"party {party!r} {self.PREFIX}"
        reason = reason.removeprefix(prefix)  # a party's own refusal, relayed by the coordinator: said once
        super().__init__(prefix + reason)
        self.party, self.reason, self.rule = party, reason, rule


class Signer(Protocol):
    """What signs an approval: a `PartyIdentity`, or a key held in an HSM behind the same two members."""

    @property
    def certificate_pem(self) -> bytes: ...

    def sign(self, payload: bytes) -> bytes: ...


class Reserved(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(ge=0)
    delta: float = Field(ge=0, le=1)
    open_ended: bool = Field(False, description="DP without a stated budget: charged against the remaining "
                             "lifetime budget as it runs")


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spec_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    job_id: str
    party: str
    dataset: str
    decided_by: str = Field(pattern=r"^(person|rule|operator):.+$")
    approved_at: str
    reserved: Reserved
    certificate_pem: str
    signature: str = Field(description="base64 of the signer's signature over `approval_payload`")

    def payload(self) -> bytes:
        return approval_payload(self)


def approval_payload(approval: Approval | dict[str, Any]) -> bytes:
    """The bytes signed: a domain tag, then the canonical JSON of every field but the signature."""
    data = approval.model_dump(mode="json") if isinstance(approval, Approval) else dict(approval)
    data.pop("signature", None)
    return _DOMAIN + canonical_json(data)


def sign_approval(signer: Signer, spec: JobSpec, *, party: str, decided_by: str, reserved: dict[str, Any],
                  now: dt.datetime | None = None) -> Approval:
    """`party`'s approval of `spec`, signed by `signer` (its organisation key)."""
    if party not in spec.data:
        raise ConsentRefused(party, f"the job reads no dataset of {party!r}")
    fields = {
        "spec_hash": spec.spec_hash(), "job_id": spec.job_id, "party": party, "dataset": spec.data[party].dataset,
        "decided_by": decided_by, "approved_at": (now or dt.datetime.now(dt.UTC)).isoformat(),
        "reserved": Reserved.model_validate(reserved).model_dump(mode="json"),
        "certificate_pem": signer.certificate_pem.decode("ascii"),
    }
    signature = signer.sign(approval_payload(fields))
    return Approval.model_validate({**fields, "signature": base64.b64encode(signature).decode("ascii")})


def verify_approval(approval: Approval | dict[str, Any], spec: JobSpec, verifier: Any) -> Approval:
    """The approval, if it is `approval.party`'s valid signature over exactly this spec; ConsentRefused naming
    that party otherwise. `verifier`: an `IdentityVerifier` (consortium CA + CRL)."""
    from sampan.crypto.identity import IdentityError

    try:
        approval = approval if isinstance(approval, Approval) else Approval.model_validate(approval)
    except Exception as exc:  # noqa: BLE001 - any malformed approval is a refusal naming what was wrong
        party = str(approval.get("party")) if isinstance(approval, dict) else "?"
        raise ConsentRefused(party, f"its approval is malformed ({exc})") from None
    party = approval.party
    if party not in spec.parties or party not in spec.data:
        raise ConsentRefused(party, f"its approval is for a party this job does not read from ({spec.parties})")
    if approval.spec_hash != spec.spec_hash():
        raise ConsentRefused(party, f"its approval covers job spec {approval.spec_hash[:16]}…, not this job's "
                             f"{spec.spec_hash()[:16]}… (the job changed after approval, or the approval is of "
                             "another job)")
    if approval.job_id != spec.job_id or approval.dataset != spec.data[party].dataset:
        raise ConsentRefused(party, "its approval names another job id or dataset")
    try:
        signature = base64.b64decode(approval.signature, validate=True)
    except ValueError:
        raise ConsentRefused(party, "its approval's signature is not base64") from None
    try:
        verifier.verify(party, approval.certificate_pem.encode("ascii"), approval.payload(), signature,
                        role="party")
    except IdentityError as exc:
        raise ConsentRefused(party, f"its approval does not verify: {exc}") from None
    return approval
