"""A bank's side of federated synthesis: handlers keyed by message kind, over its own `PartyMeasurer`.

The records stay in the measurer (`sampan.synth.measure`), which answers with noisy counts only. The
noise of each release comes in the request, from the coordinator's charged plan; the party charges
its own ledgers for it first: the job's ledger, capped at the budget the job announced
(``job["synthesis"]["epsilon"]``, persisted under the party's state folder when it has one), and, when
the agent has a privacy policy, the policy's lifetime ledger and noise floor too; a release either
refuses is refused, so a coordinator that asks for more than the party agreed to gets nothing. A job
without an agreed schema and budget is refused at ``synth.open`` (the coordinator could otherwise pick
a schema to probe the table with). The party checks each request against the job it accepted: the
schema, the parties and the aggregation mode; and every grid, bin definition, coarsening map and
baseline against the public schema before it touches a record (`sampan.synth.request_checks`), so a refusal
depends on the request alone. Under secure aggregation its noise share is 1/sqrt(K) of what it is
charged, so it releases only masked (a plain release request is refused: it would leave with too
little noise), and it helps unmask only a sum that K certified parties signed (`sampan.privacy.secagg`).

What each role learns: the coordinator, this bank's noisy releases (plain) or only its masked vectors
(secure) plus its EM-chosen tree and its own record of each release (noise, charge), and refusals that
depend only on its requests: a table that does not fit the agreed schema is reported as just that (no
counts, no rows; the details stay in the party's log); this bank, the public schema, grids, bins,
baselines and coarsening maps sent to it. Nothing here returns a record, a row count or an exact statistic.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.files import atomic_write_bytes, private_directory
from sampan.privacy.ledger import Budget, BudgetExceeded, Ledger, PrivacyEvent
from sampan.privacy.party_policy import PolicyRefused
from sampan.privacy.randomness import seeded_generator
from sampan.privacy.secagg import SecAggClient
from sampan.synth import protocol
from sampan.synth.measure import PartyMeasurer
from sampan.synth.schema import SchemaError, SynthSchema
from sampan.synth.table import table_from_party_data
from sampan.wire import Message

__all__ = ["SECAGG_KINDS", "SynthesisParty", "TableMismatch", "synthesis_party_app"]

log = logging.getLogger("sampan.synth.party")

SECAGG_KINDS = ("secagg_keys", "secagg_share", "secagg_consistency", "secagg_unmask")


class TableMismatch(SchemaError):
    """The party's table does not fit the agreed schema: said without counts or rows (those are logged locally)."""


class _PartyLedgers:
    """What the measurer charges: the job's ledger (capped at the job's announced budget) and, with a policy, the
    policy's noise floor and lifetime ledger. Both are checked before either records, and each is persisted
    before the release is computed."""

    def __init__(self, party: str, job: Ledger, path: Path | None, policy: Any = None) -> None:
        self._party, self._job, self._path, self._policy = party, job, path, policy

    def record(self, event: PrivacyEvent) -> None:
        if self._policy is not None:
            # the party's noise floor (an EM step counts by its Gaussian-equivalent multiplier 2/epsilon) and its
            # lifetime budget, checked first
            self._policy._noise(self._party, "noise multiplier", event.noise_multiplier)
            try:
                self._policy.ledger(self._party).check([event])
            except BudgetExceeded as exc:
                raise PolicyRefused(f"party {self._party!r} refuses: its own budget would be exceeded "
                                    f"({exc})") from None
        self._job.check([event])  # the job's announced budget: refused, nothing recorded anywhere
        if self._policy is not None:
            self._policy._charge(self._party, [event])  # recorded and persisted
        self._job.record(event)
        if self._path is not None:
            atomic_write_bytes(self._path, self._job.to_json().encode(), mode=0o600)


def _missing_terms(party: str, section: Mapping[str, Any]) -> str | None:
    """Why a synthesis job cannot be accepted: no agreed schema or no announced budget (None: it can)."""
    missing = [name for name in ("schema", "epsilon") if section.get(name) is None]
    if not missing:
        return None
    return (f"the synthesis job has no agreed {' or '.join(missing)} (job['synthesis']: "
            f"SynthesisSettings.job()); party {party!r} measures only under a schema and budget it accepted")


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
        refusal = _missing_terms(self.name, self._job)
        if refusal is not None:  # an agent refuses the job when it opens the run, before any synth.open
            raise SchemaError(f"party {self.name!r} refuses the job: {refusal}")
        self._policy = setup.policy
        self._setup = setup
        seed = setup.options.get("noise_seed")
        self._rng = seeded_generator(int(seed)) if seed is not None else None  # tests/demos only
        self._ledger: _PartyLedgers | None = None
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

    def _ledger_for_run(self, run_id: str) -> _PartyLedgers:
        """One job ledger for every run of this job (the job's budget is per party, in all its runs), reloaded
        from the party's state folder when it has one (an agent restarted mid-job keeps what was spent)."""
        if self._ledger is None:  # the job's budget is there: the constructor refused a job without one
            path = None
            if self._setup.state_dir is not None:
                folder = private_directory(Path(self._setup.state_dir) / "synthesis-ledgers")
                path = folder / f"{hashlib.sha256(run_id.encode()).hexdigest()[:24]}.json"
            if path is not None and path.exists():
                ledger = Ledger.from_json(path.read_text())
            else:
                ledger = Ledger({self.name: Budget(float(self._job["epsilon"]), float(self._job.get("delta", 1e-5)))},
                                accountant="rdp")
            self._ledger = _PartyLedgers(self.name, ledger, path, self._policy)
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
        schema = SynthSchema.from_dict(self._job["schema"], "the job's synthesis schema")
        if SynthSchema.from_dict(message.meta["schema"], "synth.open schema").to_dict() != schema.to_dict():
            raise SchemaError(f"party {self.name!r}: the coordinator's schema differs from the one in the job")
        if bool(message.meta.get("secure")) != self.secure:
            raise ValueError(f"party {self.name!r}: the job says secure_aggregation = {self.secure}, the request "
                             f"says {bool(message.meta.get('secure'))}")
        if self.parties and sorted(map(str, message.meta.get("parties", []))) != sorted(self.parties):
            raise ValueError(f"party {self.name!r}: the request names parties {message.meta.get('parties')}, the "
                             f"job {self.parties}")
        ledger = self._ledger_for_run(message.run_id)
        if not isinstance(self._data, Mapping) and self._setup.options.get("table_schema") is None:
            self._table(schema)  # the agent's configuration, not the records: raises its own clear error
        try:
            table = self._table(schema)
            measurer = PartyMeasurer(self.name, table, schema, ledger,  # type: ignore[arg-type]
                                     self._rng, self._noise_share())
        except Exception:  # noqa: BLE001 - what is wrong depends on the records: it stays in this party's log
            log.exception("party %s: its table does not match the agreed synthesis schema", self.name)
            raise TableMismatch(f"party {self.name!r}: the table does not match the agreed schema (details in "
                                "the party's log)") from None
        self._measurers[message.run_id] = measurer
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
        baselines = protocol.decode_baselines(message.meta["baselines"], message.arrays)  # checked by the measurer
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
