"""Review (issue 12, vertical) R12-VER-5 (fixed): a partner never loads, for bank B, a model part trained on bank A's
labels.

A partner may serve several banks: the agent keeps one row book per (dataset, label holder) "so a partner
can serve several banks (each reads aggregates over its own labels only)" (`PartyAgent._vertical_rows`),
and one registry (its store) for all its runs. `vertical.load_model` (`PartRecords.load_model`) loads
whatever registered part of ``meta["model_run"]`` the coordinator names: neither the scoring job the party
accepted (`deploy.allow.job_description` carries no model run) nor the registered part (`LocalLinearPart.
to_arrays` records no label holder) ties the part to this run's label holder. So in a run whose proved label
holder is bank B, the partner scores with its part of bank A's model (weights fitted to A's labels), and
bank B receives partial logits of a model trained on another bank's labels.
"""

from __future__ import annotations

import pytest

import sampan.vertical.psi_party
from sampan.core.transport import PartyError
from sampan.crypto.simulated_ca import simulated_consortium
from sampan.data.table import PartyData
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.capability import VERTICAL, simulate_vertical
from sampan.vertical.job import VerticalJob, load_tables
from sampan.vertical.party import VerticalParty
from sampan.vertical.session import VerticalSession
from sampan.vertical.training import VerticalLRConfig


def test_a_partner_never_scores_for_bank_b_with_bank_a_s_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(7).permutation(n))
    job = VerticalJob(
        name="bank-a-model",
        label_holder="bank",
        partners=("payments",),
        models=("lr",),
        lr=VerticalLRConfig(epochs=2),
        seed=3,
        source={"kind": "consortium", "n_smes": 4000, "seed": 4},
    )
    partner_registry = Store.open("sqlite://")  # the partner agent's one store, for all the banks it serves
    setups = simulate_vertical(job, 0)
    for name, setup in setups.items():
        setup.registry = partner_registry if name == "payments" else Store.open("sqlite://")
    run_a = start_run(
        job,
        Store.open("sqlite://"),
        transport=InProcessTransport({n: VERTICAL.party_app(s) for n, s in setups.items()}),
    ).run_id
    assert [m.name for m in partner_registry.models_for_run(run_a)] == ["bank-a-model:payments"]

    # later: a run whose proved label holder is another bank
    tables = load_tables(job)
    bank_b = PartyData(
        "bank_b", tables["bank"].ids, tables["bank"].X, tables["bank"].y, list(tables["bank"].feature_names)
    )
    verifier, identities = simulated_consortium(["bank_b", "payments"])
    parties = {
        "bank_b": VerticalParty(
            bank_b, identity=identities["bank_b"], verifier=verifier, registry=Store.open("sqlite://")
        ),
        "payments": VerticalParty(
            tables["payments"], identity=identities["payments"], verifier=verifier, registry=partner_registry
        ),
    }
    transport = InProcessTransport({n: p.app for n, p in parties.items()})
    session = VerticalSession(transport, label_holder="bank_b", partners=["payments"], run_id="scoring-for-bank-b")
    session.connect()
    try:
        reply = session.relay.wave(
            transport,
            [session.relay.request("payments", "vertical.load_model", meta={"model_run": run_a, "kind": "lr"})],
        )[0]
    except PartyError:
        return  # refused: the defence the finding asks for
    assert parties["payments"].loaded_part is None, (
        f"payments loaded {reply.meta} (trained with bank's labels) to score for bank_b"
    )
