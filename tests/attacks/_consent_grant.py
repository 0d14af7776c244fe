"""Consent for a run a test opens by hand at one party agent (as an honest coordinator would after every party
approved): the job spec of the opening's job, the agent's own approval (recorded by its consent desk, a
person's local decision) and every partner's approval signed with that partner's key from the federation
folder. Not a test module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sampan
from sampan.crypto.identity import PartyIdentity
from sampan.deploy.allow import training_terms
from sampan.deploy.consent import ConsentRefused, JobSpec, sign_approval
from sampan.wire import Message


def completed_job(meta: dict[str, Any]) -> dict[str, Any]:
    """The hand-made job with what an honest coordinator's description of a horizontal (non-GBDT) job carries
    (review R14-CONSENT2-1): its rounds (many, unless given) and training settings (the defaults, unless given)."""
    job = dict(meta.get("job") or {})
    if str(meta.get("workflow")) in ("horizontal", "evaluation"):  # R14-CONSENT3-6: a horizontal job names its model
        job.setdefault("model", "logistic")
    if str(meta.get("workflow")) == "horizontal" and job.get("model") != "gbdt":
        job.setdefault("rounds", 1000)
        job.setdefault("training", training_terms({})[1])
    return job


def spec_for(agent: Any, message: Message) -> JobSpec:
    meta = message.meta
    workflow = str(meta["workflow"])
    job = {**completed_job(dict(meta)), "workflow": workflow}
    dataset = meta.get("dataset") or next(iter(agent.config.data))
    parties = [str(p) for p in job.get("parties") or [agent.name]]
    columns = agent.consent.served_columns(dataset) if dataset in agent.config.data else []
    return JobSpec.model_validate({
        "job_id": message.run_id, "workflow": workflow, "code_version": sampan.__version__,
        "operator": job.get("operator"), "parties": parties, "label_holder": job.get("label_holder"),
        "data": {p: {"dataset": dataset, "columns": columns} for p in parties},
        "protections": list(job.get("protections") or []), "job": job, "config_sha256": "0" * 64,
        "rounds": job.get("rounds", 0),
        "model": {"kind": job["model"], "settings": {"hidden": job["hidden"]} if "hidden" in job else {}}
        if "model" in job else {}})


def with_consent(agent: Any, message: Message, root: Path | None = None) -> Message:
    """`message` (a deploy.open_run) with the spec and approvals; unchanged if the agent would not approve."""
    if not isinstance(message.meta.get("job"), dict) or not message.meta["job"].get("parties"):
        return message
    spec = spec_for(agent, message)
    try:
        own = agent.consent.decide(spec, "person:test", relayed=False)
    except ConsentRefused:
        return message
    root = root or Path(agent.config.tls.cert).parent.parent
    approvals = [own.model_dump(mode="json")]
    for party in spec.parties:
        folder = root / party
        if party == agent.name or not (folder / f"{party}.key").exists():
            continue
        cert, key = (folder / f"{party}.crt").read_bytes(), (folder / f"{party}.key").read_bytes()
        identity = PartyIdentity.from_pem(cert, key)
        approvals.append(sign_approval(identity, spec, party=party, decided_by="person:test",
                                       reserved={"epsilon": 0.0, "delta": 0.0}).model_dump(mode="json"))
    meta = {**message.meta, "job": completed_job(dict(message.meta)), "spec": spec.model_dump(mode="json"),
            "approvals": approvals}
    return Message(message.run_id, message.step, message.sender, message.recipient, message.kind,
                   arrays=message.arrays, meta=meta)


def open_with_consent(agent: Any, message: Message) -> Message:
    """The agent's reply to `message` sent with consent."""
    return agent.handle(with_consent(agent, message))
