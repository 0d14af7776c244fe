"""R12-SYN-3 (fixed): the job's announced synthesis budget binds a party with a privacy policy too.

A deployed agent always builds the synthesis party with its policy (`PartyAgent._setup` ->
`_vertical_policy`: the party's lifetime budget, shared by all its runs). `SynthesisParty._ledger_for_run`
then charges only that policy ledger and never reads ``job["synthesis"]["epsilon"]``, the budget the
coordinator announced and the bank accepted (`SynthesisSettings.job()`, shown in the job log). So a
coordinator that announced epsilon 0.5 for this fit can spend the bank's whole remaining lifetime budget in
it: the party's docstring says "a coordinator that asks for more than the party agreed to is refused".
Fixed: the party charges a per-job ledger capped at the job's epsilon beside its policy ledger, and refuses
whatever either refuses.
"""

from __future__ import annotations

from sampan.core.capability import PartySetup
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.synth import protocol
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.party import synthesis_party_app
from sampan.synth.settings import SynthesisSettings
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

JOB_EPSILON = 0.5


def test_party_with_policy_refuses_spend_beyond_the_accepted_job() -> None:
    table = next(iter(consortium_tables(400, seed=11).values()))
    settings = SynthesisSettings(schema=SME_SYNTH_SCHEMA, epsilon=JOB_EPSILON, secure_aggregation=False)
    job = {"workflow": "synthesis", "parties": ["bank"], "synthesis": settings.job()}
    policy = PartyPrivacyPolicy(min_noise_multiplier=0.5, epsilon=20.0, delta=1e-5)  # the bank's lifetime budget
    app = synthesis_party_app(PartySetup("bank", table, job, policy=policy, deployed=True))
    transport = InProcessTransport({"bank": app})
    step = 0

    def send(kind: str, meta: dict) -> Message:
        nonlocal step
        step += 1
        return list(transport.exchange([Message("run", step, "coordinator", "bank", kind, {}, meta)]))[0]

    send(protocol.OPEN, {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False, "parties": ["bank"]})
    answered = 0
    for _ in range(40):  # sigma 1: each label release is rho 0.5, far beyond epsilon 0.5 after a few
        try:
            send(protocol.RELEASE, {"op": "label", "sigma": 1.0})
        except Exception:
            break
        answered += 1
    spent = policy.ledger("bank").spent("bank")
    assert spent <= JOB_EPSILON * (1 + 1e-9), f"{answered} releases answered, epsilon {spent:.2f} spent in a " \
                                              f"job that announced {JOB_EPSILON}"


def test_job_ledger_survives_an_agent_restart(tmp_path) -> None:
    """With a state folder the job's ledger is persisted: a restarted party (same run) remembers the spend."""
    table = next(iter(consortium_tables(400, seed=11).values()))
    settings = SynthesisSettings(schema=SME_SYNTH_SCHEMA, epsilon=JOB_EPSILON, secure_aggregation=False)
    job = {"workflow": "synthesis", "parties": ["bank"], "synthesis": settings.job()}

    def party() -> InProcessTransport:
        policy = PartyPrivacyPolicy(min_noise_multiplier=0.5, epsilon=20.0, delta=1e-5)
        setup = PartySetup("bank", table, job, policy=policy, state_dir=tmp_path, deployed=True)
        transport = InProcessTransport({"bank": synthesis_party_app(setup)})
        list(transport.exchange([Message("run", 0, "coordinator", "bank", protocol.OPEN, {},
                                          {"schema": SME_SYNTH_SCHEMA.to_dict(), "secure": False,
                                           "parties": ["bank"]})]))
        return transport

    def release(transport: InProcessTransport, step: int) -> bool:
        try:
            list(transport.exchange([Message("run", step, "coordinator", "bank", protocol.RELEASE, {},
                                              {"op": "label", "sigma": 40.0})]))
        except Exception:
            return False
        return True

    first = party()
    answered = 0
    while release(first, answered + 1):
        answered += 1
    assert answered >= 1
    assert not release(party(), 1000), "a restarted party forgot what the job had spent"
    assert list((tmp_path / "synthesis-ledgers").glob("*.json"))
