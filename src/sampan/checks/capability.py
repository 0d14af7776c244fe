"""The `checks` capability: `ChecksWorkflow` + each party's `ChecksParty` behind the checks DP mod.

What a `PartySetup` must hold (a deployed agent fills it the same way):
- ``data``: the party's whole table (`sampan.data.PartyData`): checks look at every row it would train on;
- ``job``: ``{"workflow": "checks", "protections": ["dp"] under [checks.dp], "vertical": True in a vertical job,
  "label_holder": ...}``; a party whose job announced DP answers no exact release (`sampan.checks.privacy`);
- ``options["schema"]``: the party's declared table schema as a dict (public: what `checks.schema` reports), or a
  deployed agent's ``options["table_schema"]`` (its party.toml); without either, its column names only;
- ``policy``: the party's `PartyPrivacyPolicy` or None: each noised release is charged to its own ledger first;
- ``identity`` and ``verifier`` (vertical jobs): sign and check the run keys PSI's sealed channels come from.
A vertical job mounts, besides the checks handlers, only the run keys (`vertical.hello`, `vertical.peers`) and
the five PSI steps of the party's `VerticalParty`: no alignment, training or scoring handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sampan.checks.party import ChecksParty
from sampan.checks.privacy import checks_dp_mod
from sampan.checks.terms import job_terms
from sampan.checks.workflow import ChecksWorkflow, settings_of
from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.core.workflow import Workflow
from sampan.crypto.simulated_ca import simulated_consortium
from sampan.horizontal.simulation import load_party_tables
from sampan.privacy.party_policy import PolicyRefused
from sampan.vertical.capability import simulate_vertical, vertical_party
from sampan.wire import Message

__all__ = ["CHECKS", "ChecksCapability", "checks_job"]

PSI_STEPS = ("psi.offer", "psi.accept", "psi.blind", "psi.respond", "psi.finish", "psi.part", "psi.pull")


def checks_job(config: Any, parties: list[str] | None = None) -> dict[str, Any]:
    """What each party is told (and approves): the workflow, whether it is vertical, its protections, and the
    release terms it holds every request to (``checks``: epsilons, histogram bins/columns/bounds; `job_terms`)."""
    vertical = getattr(config, "vertical", None)
    named = parties if parties is not None else list(getattr(config, "party_names", []) or [])
    job: dict[str, Any] = {"workflow": "checks", "parties": list(named)}
    if vertical is not None:
        job.update(vertical=True, label_holder=str(vertical.label_holder))
    settings = settings_of(config)
    if settings.dp is not None:
        job["protections"] = ["dp"]
    job["checks"] = job_terms(settings, vertical=vertical is not None, n_parties=len(job["parties"]))
    return job


class _Only:
    """A registry that keeps only the named kinds (PSI registers its alignment steps too; checks need none)."""

    def __init__(self, app: PartyApp, kinds: tuple[str, ...]) -> None:
        self.app, self.kinds = app, kinds

    def register(self, kind: str, handler: Callable[[Message], Message]) -> None:
        if kind in self.kinds:
            self.app.register(kind, handler)


def declared_schema(setup: PartySetup) -> dict[str, Any] | None:
    """The party's declared schema: ``options["schema"]`` (simulation), else a deployed agent's dataset schema
    (``options["table_schema"]``, from its party.toml)."""
    schema = setup.options.get("schema")
    if schema is None and setup.options.get("table_schema") is not None:
        schema = setup.options["table_schema"].to_dict()
    return dict(schema) if schema is not None else None


def cardinality_only(msg: Message, inner: Callable[[Message], Message]) -> Message:
    """A checks job counts common ids and nothing more: PSI in any other mode (which would tell the parties which
    of their ids match) is refused by the party itself, whatever the coordinator asks."""
    if msg.kind.startswith("psi.") and msg.meta.get("mode") != "cardinality":
        raise PolicyRefused(f"party {msg.recipient!r} refuses {msg.kind} in mode {msg.meta.get('mode')!r}: a checks "
                            "job runs PSI in mode 'cardinality' only")
    return inner(msg)


class ChecksCapability:
    name = "checks"

    def workflow(self, config: Any) -> Workflow:
        return ChecksWorkflow()

    def party_app(self, setup: PartySetup) -> PartyApp:
        announced = "dp" in set(setup.job.get("protections") or ())
        app = PartyApp(setup.name, mods=[checks_dp_mod(setup.name, announced_dp=announced, policy=setup.policy,
                                                       max_epsilon=setup.options.get("max_epsilon"), job=setup.job)])
        psi = None
        if setup.job.get("vertical"):
            app.mods.append(cardinality_only)
            keyed = vertical_party(setup)
            app.register("vertical.hello", keyed.hello)
            app.register("vertical.peers", keyed.peers)
            keyed.psi.register(_Only(app, PSI_STEPS))
            psi = keyed.psi
        party = ChecksParty(setup.name, setup.data, declared_schema(setup), psi, job=setup.job)
        for kind, handler in party.handlers().items():
            app.register(kind, handler)
        return app

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        job = checks_job(config)
        schema = getattr(config, "schema_", None)

        def declared(name: str) -> dict[str, Any] | None:
            return config.party_schema(name).to_dict() if schema is not None and config.parties else None

        if job.get("vertical"):
            setups = simulate_vertical(config, seed)
            job = checks_job(config, job["parties"] or list(setups))
            for name, setup in setups.items():
                setup.job = job
                setup.options = {**setup.options, "schema": declared(name)}
            return setups
        tables = load_party_tables(config, seed)
        job = checks_job(config, job["parties"] or list(tables))
        verifier, identities = simulated_consortium(list(tables))
        return {name: PartySetup(name, data, job, identity=identities[name], verifier=verifier,
                                 options={"schema": declared(name)}) for name, data in tables.items()}


CHECKS = ChecksCapability()
