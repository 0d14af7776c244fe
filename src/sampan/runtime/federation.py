"""A simulated federation: every party of a run on this machine, built by the run's capability.

Generic over capabilities: `capability.simulate(config, seed)` loads and validates each party's
table at that party (bad data fails fast, naming party, file and column) and derives splits from
the seed, so a resumed run rebuilds the same parties; `capability.party_app(setup)` builds each
party's handlers exactly as a deployed agent does. Here they are only wired to a transport: in this
process, or one forked process per party (``run.workers > 1``; parties keep protocol state between
requests, so each is pinned to its own process). Nothing here runs in a deployment.

Simulation only, not a deployment's separation (review R12-VER-6, open): a simulated party whose setup
names no registry of its own registers into the run's store, so a vertical simulation's bank scores
(``<name>-scores:<bank>``) and every partner's model part sit in the same store as the coordinator's run
record; `sampan score` relies on that to act as the bank. "The scores stay with the bank" holds per
party only in a deployment (each agent's own store).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sampan.core.capability import Capability, PartySetup
from sampan.core.party import PartyApp
from sampan.core.transport import Transport
from sampan.crypto.simulated_ca import simulated_consortium
from sampan.runtime.capabilities import get_capability

if TYPE_CHECKING:
    from sampan.data.table import PartyData
    from sampan.transport.inprocess import InProcessTransport

__all__ = ["build_inprocess_federation", "build_inprocess_vertical", "build_party_apps", "build_transport",
           "simulated_party_apps"]


def build_transport(capability: Capability, config: Any, seed: int, *, registry: Any = None) -> Transport:
    """Every party's app from its simulated setup, behind an in-process or multiprocess transport.

    ``registry`` (the run's `Store`) is where simulated parties register their own model parts when
    their setup names no registry of its own. The caller owns the transport and must `close()` it."""
    return _simulate(capability, config, seed, registry)[0]


def build_inprocess_federation(config: Any, seed: int, workflow: str | None = None, *, registry: Any = None
                               ) -> tuple[Transport, dict[str, PartySetup]]:
    """The run's parties behind a transport, and their setups (tests and benchmarks inspect them).

    ``workflow`` defaults to the config's ``run.workflow`` (horizontal when it names none)."""
    return _simulate(get_capability(workflow or str(getattr(config.run, "workflow", None) or "horizontal")),
                     config, seed, registry)


def _simulate(capability: Capability, config: Any, seed: int,
              registry: Any) -> tuple[Transport, dict[str, PartySetup]]:
    from sampan.transport.inprocess import InProcessTransport  # transports load only when simulating
    from sampan.transport.multiprocess import MultiprocessTransport

    setups = capability.simulate(config, seed)
    for setup in setups.values():
        if setup.registry is None:
            setup.registry = registry
    apps = {name: capability.party_app(setup) for name, setup in setups.items()}
    workers = int(getattr(config.run, "workers", 1) or 1)
    if workers > 1:
        return MultiprocessTransport(apps, workers=workers, pinned=True), setups
    return InProcessTransport(apps), setups


def simulated_party_apps(workflow: str, data: Mapping[str, Any], job: Mapping[str, Any] | None = None,
                         **options: Any) -> dict[str, PartyApp]:
    """Apps for parties whose data is already in hand (tests, benchmarks): ``data[name]`` becomes that
    party's ``PartySetup.data`` (its shape is the capability's: see its docstring), and each party gets
    a certificate from a simulated consortium CA made for this call (its CA key dropped once issued)."""
    capability = get_capability(workflow)
    verifier, identities = simulated_consortium(list(data))
    return {name: capability.party_app(PartySetup(name, value, dict(job or {"workflow": workflow}),
                                                  identity=identities[name], verifier=verifier, options=dict(options)))
            for name, value in data.items()}


def build_party_apps(splits: Mapping[str, Any]) -> dict[str, PartyApp]:
    """Horizontal parties from ready-made splits (anything with ``train`` and ``test``), as the simulation
    builds them: a shorthand of `simulated_party_apps("horizontal", ...)` kept for tests and benchmarks."""
    return simulated_party_apps("horizontal", {name: (split.train, split.test) for name, split in splits.items()})


def build_inprocess_vertical(datasets: Mapping[str, PartyData], *, with_baselines: bool = False
                             ) -> tuple[InProcessTransport, dict[str, Any]]:
    """One VerticalParty per table, wired through the in-process transport (tests and benchmarks drive a
    `VerticalSession` over it and inspect the party objects; the workflow itself never sees them).

    `with_baselines=True` adds the INSECURE plaintext LR baseline handlers (benchmarks only; see VerticalParty).

    Each party gets its own certificate from a fresh simulated consortium CA, so the simulation signs
    and checks run keys exactly as a deployment does.
    """
    from sampan.transport.inprocess import InProcessTransport  # transports load only when simulating

    vertical = get_capability("vertical")  # by name, like every capability the runtime reaches
    verifier, identities = simulated_consortium(list(datasets))
    options = {"with_baselines": True} if with_baselines else {}
    parties = {name: vertical.party(PartySetup(name, data, {"workflow": "vertical"}, identity=identities[name],  # type: ignore[attr-defined]  # the vertical capability's own helper
                                               verifier=verifier, options=dict(options)))
               for name, data in datasets.items()}
    return InProcessTransport({n: p.app for n, p in parties.items()}), parties
