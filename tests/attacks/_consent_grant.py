"""Consent for a run a test opens by hand at one party agent (as an honest coordinator would after every party
approved): the job spec of the opening's job, the agent's own approval (recorded by its consent desk, a
person's local decision) and every partner's approval signed with that partner's key from the federation
folder. Also the setup the R14 consent attack tests share: a federation of party agents, a job spec over every
party's `loans`, the approvals an honest coordinator collects, the opening and the requests of a run. Not a test
module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from _deploy_federation import ThreadFederation

import sampan
from sampan.crypto.identity import PartyIdentity
from sampan.deploy.allow import training_terms
from sampan.deploy.config import load_party_config
from sampan.deploy.consent import ConsentRefused, JobSpec, StandingRule, job_spec, sign_approval
from sampan.deploy.party_agent import PartyAgent
from sampan.deploy.run_budget import JobReservation
from sampan.wire import Message

# an exact (no DP) two-round horizontal job on every party's `loans`: what the R14 consent attacks approve
EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "training": {"learning_rate": 0.1, "epochs": 1},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


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


@contextmanager
def consent_federation(tmp_path: Path, edit: Callable[[str], str] | None = None
                       ) -> Iterator[tuple[ThreadFederation, dict[str, PartyAgent], list[str]]]:
    """A federation of 300-row parties (not started) with one agent per party, built after `edit` rewrote each
    party.toml's text; yields (federation, agents by name, sorted names) and closes the coordinator's keys."""
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents: dict[str, PartyAgent] = {}
        for name, path in fed.files.party_configs.items():
            if edit is not None:
                path.write_text(edit(path.read_text()))
            agents[name] = PartyAgent(load_party_config(path))
        yield fed, agents, sorted(agents)
    finally:
        fed.coordinator.security.close()


def loans_spec(config: dict[str, Any], names: list[str], columns: list[str], job_id: str) -> JobSpec:
    """The spec an honest coordinator submits for `config`: every party reads `columns` of its `loans`."""
    return job_spec(config, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                    label_holder=None, operator="ops", job_id=job_id)


def request_consent(agent: PartyAgent, spec: JobSpec, decided_by: str = "operator:ops") -> Message:
    """The agent's reply to a `consent.request` of `spec` (an operator's submit, unless `decided_by` says)."""
    return agent.handle(Message(spec.job_id, 0, "coordinator", agent.name, "consent.request",
                                meta={"spec": spec.model_dump(mode="json"), "decided_by": decided_by}))


def gather_approvals(agents: dict[str, PartyAgent], names: list[str], spec: JobSpec
                     ) -> tuple[list[Any], Message | None]:
    """Every party's approval of `spec` in `names` order, as a coordinator collects them; stops at the first
    refusal and returns it (None: all approved)."""
    approvals: list[Any] = []
    for name in names:
        reply = request_consent(agents[name], spec)
        if reply.kind != "consent.approval":
            return approvals, reply
        approvals.append(reply.meta["approval"])
    return approvals, None


def open_run(agent: PartyAgent, spec: JobSpec, approvals: list[Any]) -> Message:
    """The agent's reply to the `deploy.open_run` of `spec`'s run on `loans`, carrying `approvals`."""
    return agent.handle(Message(spec.job_id, 0, "coordinator", agent.name, "deploy.open_run", meta={
        "workflow": spec.workflow, "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
        "spec": spec.model_dump(mode="json"), "approvals": approvals}))


def admit(agent: PartyAgent, spec: JobSpec, approvals: list[Any]) -> JobReservation:
    """What `deploy.open_run` asks the consent desk for the run's budget (its reservation), or JobRefused."""
    message = Message(spec.job_id, 0, "coordinator", agent.name, "deploy.open_run",
                      meta={"spec": spec.model_dump(mode="json"), "approvals": approvals})
    return agent.consent.admit_run(message, "loans", {**spec.job, "workflow": spec.workflow})


def feature_count(agent: PartyAgent, run_id: str) -> int:
    """The width of the run's model input (categories one-hot encoded), from its `describe`."""
    return len(agent.handle(Message(run_id, 1, "coordinator", agent.name, "describe", meta={})).meta["feature_names"])


def fit(agent: PartyAgent, run_id: str, step: int, params: np.ndarray, model: dict[str, Any],
        train: dict[str, Any]) -> Message:
    """The agent's reply to round `step`'s `fit` (seeded with the step)."""
    return agent.handle(Message(run_id, step, "coordinator", agent.name, "fit", arrays={"params": params},
                                meta={"model": model, "seed": step, "train": train}))


def add_local_rule(agent: PartyAgent, **fields: Any) -> StandingRule:
    """A standing rule on `loans` the party's own person adds locally (`sampan consent add-rule`)."""
    return agent.consent.add_rule(StandingRule(party=agent.name, dataset="loans", **fields).model_dump(mode="json"),
                                  "person:alice", relayed=False)
