"""A party agent: one organisation's process. It loads its own data, dials out, answers the coordinator.

The agent holds the party's tables (bound in its own party.toml) and, per run, the handlers of that
run's workflow: `deploy.open_run` tells it which workflow, which of its datasets, and the seed of its
own train/test split (derived from the run seed, so a deployed run splits exactly like the simulation
of the same run). Nothing but `sampan.wire` messages ever leaves: the same handlers as in-process.

PSI runs single-threaded in an agent: its fork-based workers are unsafe next to gRPC's threads.

A restarted agent rejoins: it reconnects, the coordinator re-sends the open runs' setup and any
outstanding request, and horizontal training carries on (its handlers keep no state that matters).
Vertical protocols keep keys and shares in memory, so a vertical run cannot survive a restarted party.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from sampan.config import ConfigError
from sampan.data import ColumnSpec, PartyData, TableSchema, load_table
from sampan.deploy.certs import probe_coordinator
from sampan.deploy.config import PartyConfig, split_address
from sampan.horizontal.party import HorizontalParty
from sampan.runtime.party import PartyApp
from sampan.transport.grpc_client import LinkSettings, PartyLink
from sampan.wire import Message

__all__ = ["PartyAgent", "FAULT_PARTY_ENV"]

log = logging.getLogger("sampan.deploy.party")
FAULT_PARTY_ENV = "SAMPAN_FAULT_PARTY_EXIT_ON"  # test hook: "fit:3" = exit hard on receiving the 3rd fit request
MAX_OPEN_RUNS = 8


@dataclass
class _RunContext:
    workflow: str
    dataset: str
    app: PartyApp
    vertical: Any = None


class PartyAgent:
    def __init__(self, config: PartyConfig) -> None:
        self.config = config
        self.name = config.party.name
        self._tables: dict[str, PartyData] = {}
        self._runs: OrderedDict[str, _RunContext] = OrderedDict()
        self._seen: dict[str, int] = {}
        fault = os.environ.get(FAULT_PARTY_ENV, "")
        self._fault = (fault.split(":")[0], int(fault.split(":")[1])) if ":" in fault else None
        self.link: PartyLink | None = None

    # --- data ---------------------------------------------------------------------------------------
    def table(self, dataset: str | None) -> tuple[str, PartyData]:
        datasets = self.config.data
        if dataset is None:
            if len(datasets) != 1:
                raise ValueError(f"party {self.name!r} has datasets {sorted(datasets)}; the run must name one "
                                 "(deploy.dataset)")
            dataset = next(iter(datasets))
        binding = datasets.get(dataset)
        if binding is None:
            raise ValueError(f"party {self.name!r} has no dataset {dataset!r} (has {sorted(datasets)})")
        if dataset not in self._tables:
            s = binding.schema_
            schema = TableSchema(s.id, s.label, tuple(
                ColumnSpec(c.name, c.kind, tuple(c.categories) if c.categories else None) for c in s.features))
            self._tables[dataset] = load_table(binding.path, schema, self.name, binding.format)
        return dataset, self._tables[dataset]

    # --- requests -----------------------------------------------------------------------------------
    def handle(self, message: Message) -> Message:
        self._fault_hook(message.kind)
        try:
            if message.kind == "deploy.open_run":
                return self._open(message)
            if message.kind == "deploy.close_run":
                return self._close(message)
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator as an error reply
            log.warning("party %s failed on %s: %s", self.name, message.kind, exc)
            return message.error_reply(exc)
        context = self._runs.get(message.run_id)
        if context is None:
            return message.error_reply(ValueError(
                f"party {self.name!r} has no open run {message.run_id!r} (deploy.open_run must come first)"))
        return context.app.handle(message)

    def _fault_hook(self, kind: str) -> None:
        if self._fault is None or kind != self._fault[0]:
            return
        self._seen[kind] = self._seen.get(kind, 0) + 1
        if self._seen[kind] == self._fault[1]:
            log.error("fault injection: exiting on %s #%d", kind, self._seen[kind])
            os._exit(17)

    def _open(self, message: Message) -> Message:
        meta = message.meta
        workflow = str(meta["workflow"])
        current = self._runs.get(message.run_id)
        if current is not None and current.workflow == workflow:
            return message.reply("deploy.opened", meta={"reopened": True})
        dataset, table = self.table(meta.get("dataset"))
        if workflow == "horizontal":
            if table.y is None:
                raise ValueError(f"party {self.name!r}: dataset {dataset!r} has no label; horizontal FL needs one")
            rng = np.random.default_rng(int(meta["split_seed"]))
            train, test = table.train_test_split(float(meta["test_fraction"]), rng)
            app = PartyApp(self.name)
            for kind, handler in HorizontalParty(self.name, train, test).handlers().items():
                app.register(kind, handler)
            context = _RunContext(workflow, dataset, app)
        elif workflow == "vertical":
            from sampan.vertical.party import VerticalParty

            party = VerticalParty(table)
            # PSI would fork worker processes; a fork while gRPC's threads run can crash the child or
            # corrupt the parent's TLS state, so an agent blinds in its own thread (one core).
            party.psi.workers = 1
            context = _RunContext(workflow, dataset, party.app, party)
        else:
            raise ValueError(f"unknown workflow {workflow!r}")
        self._runs[message.run_id] = context
        while len(self._runs) > MAX_OPEN_RUNS:
            self._runs.popitem(last=False)
        log.info("party %s opened run %s (%s, dataset %s)", self.name, message.run_id, workflow, dataset)
        return message.reply("deploy.opened", meta={"reopened": False})

    def _close(self, message: Message) -> Message:
        context = self._runs.pop(message.run_id, None)
        saved = None
        model = message.meta.get("save_model")
        if context is not None and context.vertical is not None and model and context.vertical.lr.part is not None:
            from sampan.runtime.store import Store

            arrays, meta = context.vertical.lr.part.to_arrays()
            store = Store.open(self.config.store_url)
            try:  # this party's own store: its part of the model never leaves it
                saved = store.register_model(f"{model}:{self.name}", message.run_id, arrays, meta)
            finally:
                store.close()
        log.info("party %s closed run %s", self.name, message.run_id)
        return message.reply("deploy.closed", meta={"saved_version": saved})

    # --- connection ---------------------------------------------------------------------------------
    def serve(self, stop: threading.Event | None = None) -> None:
        """Dial out and serve until `stop` is set or the coordinator refuses this party for good."""
        p, tls = self.config.party, self.config.tls
        host, port = split_address(p.coordinator)
        server_name = p.server_name or host
        for name in self.config.data:  # fail fast, here, on bad data rather than in round 1
            self.table(name)
        try:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca), private_key=_read(tls.key), certificate_chain=_read(tls.cert))
        except OSError as exc:
            raise ConfigError(f"party {self.name!r}: cannot read TLS files: {exc}") from None

        def preflight() -> None:
            probe_coordinator(host, port, ca=_path(tls.ca), cert=_path(tls.cert), key=_path(tls.key),
                              server_name=server_name, expected_name=p.coordinator_name, pin=p.coordinator_pin,
                              crl=_path(tls.crl) if tls.crl else None)

        settings = LinkSettings(name=self.name, address=p.coordinator, coordinator_name=p.coordinator_name,
                                target_name=server_name, limits=p.limits(), backoff_initial_s=p.backoff_initial_s,
                                backoff_max_s=p.backoff_max_s,
                                capabilities=("horizontal", "vertical"), agent="sampan-party/1")
        self.link = PartyLink(settings, self.handle, credentials, preflight=preflight)
        self.link.serve_forever(stop)


def _path(value: str | None) -> Any:
    from pathlib import Path

    return Path(value) if value else None


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
