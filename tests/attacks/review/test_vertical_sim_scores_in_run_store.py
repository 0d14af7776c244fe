"""Review (issue 12, vertical) R12-VER-6 (simulation vs deployment): a simulated run files the bank's scores and
every partner's model part in the coordinator's own run store.

`runtime.federation._simulate` gives every simulated party the runner's store as its registry
(`PartySetup.registry = registry`), so `score.save` writes the bank's per-applicant scores (probability of
default, reasons) and `vertical.save_model` each partner's weights into the store the coordinator's run
record, report and receipt live in. The report built from that store says "The scores stay with the bank
(in its own registry); the coordinator never sees them" (`runtime.reports_vertical`), and the workflow's
receipt "Scores of applications stay with the bank (only their count leaves)". In a deployment each party has
its own store; in a simulation the claim is false for anyone reading the run store (the CLI's `runs`/`models`
listings, a shared run database).
"""

from __future__ import annotations

import json

import pytest

import sampan.vertical.psi_party
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.vertical.job import VerticalJob, load_tables
from sampan.vertical.training import VerticalLRConfig


@pytest.mark.xfail(strict=True, reason="R12-VER-6 (known, documented in the simulation report and runtime.federation): "
                                       "a simulated run registers the bank's scores and partners' parts "
                                       "in the coordinator's run store, contrary to the report and receipt")
def test_a_simulated_run_keeps_scores_and_partner_parts_out_of_the_run_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(7).permutation(n))
    job = VerticalJob(name="sim", label_holder="bank", partners=("payments",), models=("lr",),
                      lr=VerticalLRConfig(epochs=2), seed=3, source={"kind": "consortium", "n_smes": 4000, "seed": 4})
    applicant = str(load_tables(job)["bank"].ids[-1])
    job = VerticalJob(**{**job.__dict__, "applicants": (applicant,)})
    store = Store.open("sqlite://")
    run_id = start_run(job, store).run_id  # the runner's own simulation, as `sampan run` does
    leaked = {}
    for entry in store.models_for_run(run_id):
        model = store.get_model(entry.name, entry.version) if hasattr(store, "get_model") else entry
        text = json.dumps(getattr(model, "meta", {}), default=str)
        if entry.name.endswith("-scores:bank") or entry.name.endswith(":payments"):
            leaked[entry.name] = text[:120]
    assert not leaked, f"the coordinator's run store holds: {leaked}"
