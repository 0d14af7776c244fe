"""R12-SYN-4 (fixed): ``synth.open`` is not an exact, uncharged count query.

`SynthesisParty.open` checks the coordinator's schema against ``job["synthesis"]["schema"]`` only when the job
has one. A synthesis job without a ``synthesis`` section is accepted (`deploy.allow` adds the section only
when the coordinator's config has ``[synthesis]``; the party agent does not require it; `simulated_setups`
without ``schema`` leaves it out too). The coordinator then opens with a schema whose categories omit one
value, and `validate_table` answers with an error reply that states HOW MANY of the bank's records hold a
value outside the declared categories and at which data rows. Exact counts, nothing charged, repeatable.
Fixed: a job without an agreed schema is refused at open, and a table that does not fit the agreed schema
is reported as just that (no counts, no rows; the details stay in the party's log).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sampan.core.capability import PartySetup
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.synth import protocol
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.party import synthesis_party_app
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

COLUMN = "sector"


def _open(table: dict[str, np.ndarray], schema_dict: dict) -> str:
    job = {"workflow": "synthesis", "parties": ["bank"], "protections": ["dp"]}  # no "synthesis" section
    policy = PartyPrivacyPolicy(epsilon=5.0, delta=1e-5)
    try:  # refused when the party builds its side of the job, or at synth.open: either way on the job alone
        transport = InProcessTransport({"bank": synthesis_party_app(PartySetup("bank", table, job, policy=policy,
                                                                                 deployed=True))})
        list(transport.exchange([Message("run", 0, "coordinator", "bank", protocol.OPEN, {},
                                          {"schema": schema_dict, "secure": False, "parties": ["bank"]})]))
        return "opened"
    except Exception as exc:
        return str(exc)


def test_open_reply_does_not_depend_on_one_record() -> None:
    table = next(iter(consortium_tables(400, seed=13).values()))
    values = np.asarray(table[COLUMN]).astype(str)
    target = values[0]
    d = {k: np.asarray(v) for k, v in table.items()}
    extra = np.flatnonzero(values == target)[:1]
    d_prime = {k: np.concatenate([v, v[extra]]) for k, v in d.items()}
    spec = SME_SYNTH_SCHEMA.column(COLUMN)
    probe_columns = tuple(dataclasses.replace(c, categories=tuple(x for x in c.categories if x != target))
                          if c.name == COLUMN else c for c in SME_SYNTH_SCHEMA.columns)
    probe = dataclasses.replace(SME_SYNTH_SCHEMA, columns=probe_columns).to_dict()
    assert target in spec.categories
    reply_d, reply_dp = _open(d, probe), _open(d_prime, probe)
    assert reply_d == reply_dp, f"D: {reply_d[:160]!r} / D': {reply_dp[:160]!r}"
    assert "no agreed schema" in reply_d


def test_open_mismatch_with_the_agreed_schema_says_no_counts() -> None:
    """With the probe as the job's agreed schema, the refusal reads the same on D and D' (no counts or rows)."""
    table = next(iter(consortium_tables(400, seed=13).values()))
    values = np.asarray(table[COLUMN]).astype(str)
    target = values[0]
    d = {k: np.asarray(v) for k, v in table.items()}
    extra = np.flatnonzero(values == target)[:1]
    d_prime = {k: np.concatenate([v, v[extra]]) for k, v in d.items()}
    probe_columns = tuple(dataclasses.replace(c, categories=tuple(x for x in c.categories if x != target))
                          if c.name == COLUMN else c for c in SME_SYNTH_SCHEMA.columns)
    probe = dataclasses.replace(SME_SYNTH_SCHEMA, columns=probe_columns).to_dict()

    def opened(t: dict[str, np.ndarray]) -> str:
        job = {"workflow": "synthesis", "parties": ["bank"], "protections": ["dp"],
               "synthesis": {"epsilon": 1.0, "delta": 1e-5, "secure_aggregation": False, "schema": probe}}
        app = synthesis_party_app(PartySetup("bank", t, job, policy=PartyPrivacyPolicy(epsilon=5.0), deployed=True))
        try:
            list(InProcessTransport({"bank": app}).exchange([Message("run", 0, "coordinator", "bank", protocol.OPEN,
                                                                     {}, {"schema": probe, "secure": False,
                                                                          "parties": ["bank"]})]))
            return "opened"
        except Exception as exc:
            return str(exc)

    reply_d, reply_dp = opened(d), opened(d_prime)
    assert "does not match the agreed schema" in reply_d
    assert reply_d == reply_dp
