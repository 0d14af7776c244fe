"""A bank's side of federated synthesis: handlers keyed by message kind, over its own `PartyMeasurer`.

The records stay in the measurer (`sampan.synth.measure`), which answers with noisy counts only. The
noise of each release comes in the request, from the coordinator's charged plan; the party charges
its own ledger for it first (its policy ledger when the agent has one, else a ledger with the budget
the job states), so a coordinator that asks for more than the party agreed to is refused. The party
checks each request against the job it accepted: the schema, the parties and the aggregation mode.
Under secure aggregation its noise share is 1/sqrt(K) of what it is charged, so it releases only
masked (a plain release request is refused: it would leave with too little noise), and it helps
unmask only a sum that K certified parties signed (`sampan.privacy.secagg`).

What each role learns: the coordinator, this bank's noisy releases (plain) or only its masked vectors
(secure) plus its EM-chosen tree and its own record of each release (noise, charge); this bank, the
public schema, grids, bins, baselines and coarsening maps sent to it. Nothing here returns a record,
a row count or an exact statistic.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.privacy.ledger import Budget, Ledger, PrivacyEvent
from sampan.privacy.randomness import seeded_generator
from sampan.privacy.secagg import SecAggClient
from sampan.synth import protocol
from sampan.synth.measure import PartyMeasurer
from sampan.synth.schema import SchemaError, SynthSchema
from sampan.synth.table import table_from_party_data
from sampan.wire import Message

__all__ = ["SECAGG_KINDS", "SynthesisParty", "synthesis_party_app"]

SECAGG_KINDS = ("secagg_keys", "secagg_share", "secagg_consistency", "secagg_unmask")


class _PolicyLedger:
    """The party's policy ledger as the measurer charges it: checked, recorded and persisted per release."""

    def __init__(self, policy: Any, party: str) -> None:
        self._policy, self._party = policy, party

    def record(self, event: PrivacyEvent) -> None:
        # the party's noise floor (an EM step counts by its Gaussian-equivalent multiplier 2/epsilon), then its
        # own budget: refused, or recorded and persisted before the release is computed
        self._policy._noise(self._party, "noise multiplier", event.noise_multiplier)
        self._policy._charge(self._party, [event])


def job_settings(job: Mapping[str, Any]) -> dict[str, Any]:
    """The synthesis part of the job the party accepted (``job["synthesis"]``), with its parties."""
    section = dict(job.get("synthesis") or {})
    section.setdefault("parties", list(job.get("parties") or []))
    if "secure_aggregation" not in section and "protections" in job:  # a deployed job announces its protections
        section["secure_aggregation"] = "secure_aggregation" in (job.get("protections") or ())
    return section


class SynthesisParty:
    """One bank's handlers; its table never leaves this object."""

    def __init__(self, setup: PartySetup) -> None:
        self.name = setup.name
        self._data = setup.data
        self._job = job_settings(setup.job)
        self._policy = setup.policy
        self._setup = setup
        seed = setup.options.get("noise_seed")
        self._rng = seeded_generator(int(seed)) if seed is not None else None  # tests/demos only
        self._ledger: Any = None
        self._measurers: dict[str, PartyMeasurer] = {}
        self._secagg: SecAggClient | None = None

    # -- what the job allows ----------------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        return bool(self._job.get("secure_aggregation", True))

    @property
    def parties(self) -> list[str]:
        return [str(p) for p in self._job.get("parties", [])]

    def _noise_share(self) -> float:
        return 1.0 / math.sqrt(len(self.parties)) if self.secure else 1.0

    def _ledger_for_run(self) -> Any:
        if self._policy is not None:
            return _PolicyLedger(self._policy, self.name)
        if self._ledger is None:  # one ledger for every run of this job: the job's budget is per party, in all
            if "epsilon" not in self._job:
                raise ValueError(f"party {self.name!r}: the job states no synthesis budget (synthesis.epsilon) and "
                                 "the party has no privacy policy")
            self._ledger = Ledger({self.name: Budget(float(self._job["epsilon"]), float(self._job.get("delta", 1e-5)))},
                                  accountant="rdp")
        return self._ledger

    def _client(self) -> SecAggClient:
        if self._secagg is None:  # an agent's own client (its state folder) when it made one, else one per job
            given = self._setup.options.get("secagg")
            self._secagg = given if given is not None else SecAggClient(
                self.name, identity=self._setup.identity, verifier=self._setup.verifier)
        return self._secagg

    def _table(self, schema: SynthSchema) -> Mapping[str, np.ndarray]:
        """The party's records as named columns: a synth table, or a loaded `PartyData` decoded with the
        table schema the agent passes in ``options["table_schema"]``."""
        if isinstance(self._data, Mapping):
            return self._data
        table_schema = self._setup.options.get("table_schema")
        if table_schema is None:
            raise TypeError(f"party {self.name!r}: synthesis needs the party's table as named columns, or its "
                            f"table schema to decode a {type(self._data).__name__} (options['table_schema'])")
        return table_from_party_data(self._data, table_schema, schema.label)

    # -- handlers ----------------------------------------------------------------------------------------------

    def open(self, message: Message) -> Message:
        schema = SynthSchema.from_dict(message.meta["schema"], "synth.open schema")
        agreed = self._job.get("schema")
        if agreed is not None and SynthSchema.from_dict(agreed).to_dict() != schema.to_dict():
            raise SchemaError(f"party {self.name!r}: the coordinator's schema differs from the one in the job")
        if bool(message.meta.get("secure")) != self.secure:
            raise ValueError(f"party {self.name!r}: the job says secure_aggregation = {self.secure}, the request "
                             f"says {bool(message.meta.get('secure'))}")
        if self.parties and sorted(map(str, message.meta.get("parties", []))) != sorted(self.parties):
            raise ValueError(f"party {self.name!r}: the request names parties {message.meta.get('parties')}, the "
                             f"job {self.parties}")
        self._measurers[message.run_id] = PartyMeasurer(self.name, self._table(schema), schema, self._ledger_for_run(),
                                                        self._rng, self._noise_share())
        return message.reply(message.kind)

    def _measurer(self, message: Message) -> PartyMeasurer:
        measurer = self._measurers.get(message.run_id)
        if measurer is None:
            raise ValueError(f"party {self.name!r}: run {message.run_id!r} was not opened (synth.open)")
        if "encoders" in message.meta:
            measurer.set_encoders(protocol.decode_encoders(measurer._schema, message.meta["encoders"],
                                                           message.arrays))
        return measurer

    def release(self, message: Message) -> Message:
        measurer = self._measurer(message)
        masked = "secagg" in message.meta
        if masked != self.secure:
            raise ValueError(f"party {self.name!r} refuses a {'masked' if masked else 'plain'} release: the job "
                             f"sums releases {'by secure aggregation' if self.secure else 'in the clear'}")
        meta, arrays = message.meta, message.arrays
        sigma, op = float(meta["sigma"]), str(meta["op"])
        if not sigma > 0 or not math.isfinite(sigma):
            raise ValueError(f"party {self.name!r}: noise sigma must be positive and finite, got {sigma}")
        if op == "label":
            noisy = measurer.label_counts(sigma)
        elif op == "one_way":
            grid = protocol.decode_grid(meta["grid"], arrays) if "grid" in meta else None
            noisy = measurer.one_way(str(meta["column"]), sigma, grid)
        elif op == "clique":
            noisy = measurer.clique(protocol.decode_axes(meta["axes"], arrays), sigma)
        else:
            raise ValueError(f"party {self.name!r}: unknown release {op!r}")
        record = measurer.releases[-1]
        if not masked:
            return message.reply(message.kind, arrays={"release": np.asarray(noisy, np.float64)},
                                 meta={"release": record})
        vector = np.ravel(np.asarray(noisy, np.float64))
        out = self._client().respond_masked(arrays, meta["secagg"], vector, run_id=message.run_id,
                                            noise_parties=len(self.parties))
        return message.reply(message.kind, arrays={"masked": out}, meta={"release": record})

    def select_tree(self, message: Message) -> Message:
        measurer = self._measurer(message)
        before = len(measurer.releases)
        baselines = protocol.decode_baselines(message.meta["baselines"], message.arrays)
        edges = measurer.select_tree([str(f) for f in message.meta["features"]], baselines,
                                     float(message.meta["epsilon"]))
        return message.reply(message.kind, meta={"edges": [list(e) for e in edges],
                                                 "releases": measurer.releases[before:]})

    def secagg(self, message: Message) -> Message:
        if not self.secure:
            raise ValueError(f"party {self.name!r}: this job does not use secure aggregation")
        return message.reply(message.kind, arrays=self._client().respond(message.kind, message.arrays, message.meta,
                                                           run_id=message.run_id))

    def app(self) -> PartyApp:
        app = PartyApp(self.name)
        app.register(protocol.OPEN, self.open)
        app.register(protocol.RELEASE, self.release)
        app.register(protocol.SELECT_TREE, self.select_tree)
        for kind in SECAGG_KINDS:
            app.register(kind, self.secagg)
        return app


def synthesis_party_app(setup: PartySetup) -> PartyApp:
    return SynthesisParty(setup).app()
