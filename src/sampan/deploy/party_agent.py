"""A party agent: one organisation's process. It loads its own data, dials out, answers the coordinator.

The agent holds the party's tables (bound in its own party.toml) and, per run, the handlers of that
run's workflow: `deploy.open_run` tells it which workflow and which of its datasets. The party fixes its
own train/holdout split: one keyed-hash Bernoulli draw per row under a secret it drew itself, the
secret and the holdout fraction pinned per dataset at its first run in its state dir (a run with
another fraction is refused), so no coordinator can rotate rows through the exactly evaluated holdout
or read the training count off its size. Horizontal runs enforce the party's own privacy policy
(`[allow]` floor and required DP, the DP levels the job announced, `[privacy]` budget, central-DP3
trust and evaluation cap) with one ledger persisted in <state_dir>/privacy-ledger.json; vertical runs
charge their histogram releases to the same ledger.
Nothing but `sampan.wire` messages ever leaves: the same handlers as in-process.

PSI runs single-threaded in an agent: its fork-based workers are unsafe next to gRPC's threads.

A restarted agent rejoins: it reconnects, the coordinator re-sends the open runs' setup and any
outstanding request, and horizontal training carries on (its handlers keep no state that matters).
Vertical protocols keep keys and shares in memory, so a vertical run cannot survive a restarted party.

The agent refuses any job outside its `[allow]` list (`sampan.deploy.allow`) before running anything
of it: the refusal goes back to the coordinator as an error naming the rule, into the agent's log, and
into the party's own signed audit log (its store, under the run's id), as does every job it accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from sampan.config import ConfigError
from sampan.data import ColumnSpec, PartyData, TableSchema, load_table
from sampan.deploy.allow import JobRefused, PeerAllowList, check_job, check_request, privacy_policy
from sampan.deploy.certs import probe_coordinator
from sampan.deploy.config import PartyConfig, split_address
from sampan.deploy.keyfiles import KeyFileError, unencrypted_pem
from sampan.files import atomic_write_bytes, private_directory, private_sqlite
from sampan.horizontal.party import HorizontalParty
from sampan.privacy.party_policy import DEFAULT_MIN_NOISE_MULTIPLIER, PartyPrivacyPolicy
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
    job: dict[str, Any] | None = None  # the job description this party accepted (every request is checked against it)


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
        self._identity: Any = None  # PartyIdentity, loaded at the first vertical run
        self._store: Any = None     # this party's own Store (audit log, model parts), opened at first use
        self._ledgers: dict[str, Any] = {}  # its privacy ledger, shared by the policies of its horizontal runs

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
        try:
            check_request(self.config.allow, self.name, message.kind, message.meta, context.job)
        except JobRefused as exc:
            self._refused(message, exc)
            return message.error_reply(exc)
        return context.app.handle(message)

    def _audit(self, run_id: str, kind: str, detail: dict[str, Any]) -> None:
        """An entry in this party's own signed audit log (its store), under the run's id."""
        try:
            self.store().log_event(run_id or "security", kind, detail)
        except Exception as exc:  # noqa: BLE001 - the refusal itself must not fail; the plain log has it
            log.error("party %s: could not write %s to its audit log: %s", self.name, kind, exc)

    def store(self) -> Any:
        """This party's own store (0600), opened once: its audit log and its parts of vertical models."""
        if self._store is None:
            from sampan.runtime.store import Store

            private_sqlite(self.config.store_url)
            self._store = Store.open(self.config.store_url)
        return self._store

    def _refused(self, message: Message, exc: JobRefused) -> None:
        log.warning("party %s refused %s of run %s (%s): %s", self.name, message.kind, message.run_id, exc.rule,
                    exc.reason)
        self._audit(message.run_id, "job_refused", {"request": message.kind, "rule": exc.rule, "reason": exc.reason,
                                                    "job": message.meta.get("job")})

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
        job = {**dict(meta.get("job") or {}), "workflow": workflow}
        dataset, table = self.table(meta.get("dataset"))
        try:
            check_job(self.config.allow, self.name, job, dataset,
                      [c.name for c in self.config.data[dataset].schema_.features])
        except JobRefused as exc:
            self._refused(message, exc)
            raise
        self._audit(message.run_id, "job_accepted", {"job": job, "dataset": dataset})
        if workflow == "horizontal":
            if table.y is None:
                raise ValueError(f"party {self.name!r}: dataset {dataset!r} has no label; horizontal FL needs one")
            train, test = self._holdout_split(dataset, table, meta)
            app = PartyApp(self.name)
            # with a CRL, always ready for SecAgg; without one only a job that claims none opens (and then the
            # party has no SecAgg client at all, so a coordinator that lied about it is refused)
            secagg = (self._secagg_client(job) if self.config.tls.crl
                      or "secure_aggregation" in job.get("protections", ()) else None)
            policy = self._horizontal_policy(job)
            horizontal = HorizontalParty(self.name, train, test, policy, secagg=secagg,  # one evaluation per run,
                                         state_dir=Path(self.config.party.state_dir) / "horizontal",  # persisted,
                                         max_evaluations=self.config.privacy.max_evaluations)  # capped across runs
            for kind, handler in horizontal.handlers().items():
                app.register(kind, handler)
            context = _RunContext(workflow, dataset, app, job=job)
        elif workflow == "vertical":
            from sampan.vertical.party import VerticalParty

            identity, verifier = self._vertical_identity()
            party = VerticalParty(table, identity=identity,  # peers' keys only from the partners it accepted
                                  verifier=PeerAllowList(verifier, self.name, job["parties"],
                                                         label_holder=job.get("label_holder")),
                                  policy=self._vertical_policy(),  # its noise floor and ledger on WOE/GBDT releases
                                  lr_state=Path(self.config.party.state_dir) / "vertical-lr",  # LR instances per run
                                  # one train/validation/test partition of the customers per dataset and an
                                  # evaluation cap, persisted across runs (review R12-1/R12-3)
                                  row_book=self._vertical_rows(dataset, str(job.get("label_holder"))),
                                  with_baselines=False)  # never the insecure plaintext benchmark baseline (plr.*)
            # PSI would fork worker processes; a fork while gRPC's threads run can crash the child or
            # corrupt the parent's TLS state, so an agent blinds in its own thread (one core).
            party.psi.workers = 1
            context = _RunContext(workflow, dataset, party.app, party, job=job)
        else:
            raise ValueError(f"unknown workflow {workflow!r}")
        self._runs[message.run_id] = context
        while len(self._runs) > MAX_OPEN_RUNS:
            self._runs.popitem(last=False)
        log.info("party %s opened run %s (%s, dataset %s)", self.name, message.run_id, workflow, dataset)
        return message.reply("deploy.opened", meta={"reopened": False})

    def _vertical_rows(self, dataset: str, label_holder: str) -> Any:
        """One vertical row book per (dataset, label holder): its fixed train/validation/test customers and
        evaluation cap, shared by this agent's open runs and persisted in <state_dir>/vertical-rows/ (review
        R12-1/R12-3). Keyed by the label holder too, so a partner can serve several banks (each reads
        aggregates over its own labels only)."""
        from sampan.vertical.rows import RowBook

        books = self.__dict__.setdefault("_row_books", {})
        key = (dataset, label_holder)
        if key not in books:
            name = hashlib.sha256(f"{dataset}\0{label_holder}".encode()).hexdigest()[:16]
            books[key] = RowBook(self.name, path=Path(self.config.party.state_dir) / "vertical-rows" /
                                 f"{name}.json", max_evaluations=self.config.privacy.max_evaluations)
        return books[key]

    def _holdout_split(self, dataset: str, table: PartyData, meta: dict[str, Any]) -> tuple[PartyData, PartyData]:
        """This party's own train/holdout split: holdout rows are outside the DP unit and evaluated exactly, so a
        coordinator must neither move rows in and out of the holdout from run to run nor learn the training
        row count from the holdout's size (review R8-1: exact holdout counts round(f·n) at several
        coordinator-chosen fractions pinned n_train and its positives exactly).

        Each row is in the holdout by its own Bernoulli draw: a keyed hash (HMAC-SHA256 under a 32-byte
        secret the party draws from the OS CSPRNG at the dataset's first run) of the row id, below the
        fraction. Membership of one row never depends on any other row, so the holdout's size and label
        counts are Binomial draws that reveal the holdout's composition, not the training count. The secret
        and the fraction are pinned per dataset in <state_dir>/split-seeds.json (0600, written before first
        use); a run asking another fraction is refused, as is a first fraction above `[privacy]
        max_test_fraction`. The coordinator's `split_seed` is not used."""
        path = private_directory(self.config.party.state_dir) / "split-seeds.json"
        pins = json.loads(path.read_text()) if path.exists() else {}
        asked = float(meta["test_fraction"])
        pin = pins.get(dataset)
        if not isinstance(pin, dict):  # first use (an old seed-only pin is replaced once: it was coordinator-known)
            cap = self.config.privacy.max_test_fraction
            if not 0.0 < asked <= cap:
                raise ValueError(f"party {self.name!r} refuses test_fraction={asked} for dataset {dataset!r}: above "
                                 f"its [privacy] max_test_fraction {cap} (holdout rows are outside the DP unit)")
            pin = pins[dataset] = {"key": secrets.token_bytes(32).hex(), "test_fraction": asked}
            atomic_write_bytes(path, json.dumps(pins, sort_keys=True).encode(), mode=0o600)  # before it is used
        if not math.isclose(asked, float(pin["test_fraction"]), rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"party {self.name!r} refuses test_fraction={asked} for dataset {dataset!r}: its holdout "
                             f"is pinned at {pin['test_fraction']} ({path}); another fraction would move rows in "
                             "or out of the exactly evaluated holdout")
        return pinned_split(table, pin, dataset)

    def _horizontal_policy(self, job: dict[str, Any]) -> PartyPrivacyPolicy:
        """The privacy policy of one horizontal run, from party.toml: the `[allow]` noise floor and required DP,
        the `[privacy]` budget and trust, one ledger for all its runs persisted in <state_dir> (written before
        each release, reloaded after a restart)."""
        allow, own = self.config.allow, self.config.privacy
        need = set(allow.require) if allow is not None else set()
        levels = {level.upper() for level in need & {"dp1", "dp2", "dp3"}} | ({"DP"} if "dp" in need else set())
        # a job announced with DP is a DP run from its first message (review R8-3): the levels it announced are
        # required of every request, so describe/stats/evaluate are under DP before any DP request arrived
        levels |= {level.upper() for level in set(job.get("protections") or ()) & {"dp1", "dp2", "dp3"}}
        floor = allow.min_noise_multiplier if allow is not None and allow.min_noise_multiplier else None
        return PartyPrivacyPolicy(
            min_noise_multiplier=floor or DEFAULT_MIN_NOISE_MULTIPLIER, epsilon=own.epsilon, delta=own.delta,
            required_levels=frozenset(levels), ledger_path=Path(self.config.party.state_dir) / "privacy-ledger.json",
            # DP3 shares assume at most the job's party count: a larger `parties` would thin this party's noise
            max_parties=len(job["parties"]),
            trust_coordinator_for_central_dp3=own.trust_coordinator_for_central_dp3,
        ).sharing_ledgers(self._ledgers)

    def _vertical_policy(self) -> PartyPrivacyPolicy:
        """The policy of one vertical run: the `[allow]` floor and required DP on histograms, charged to the same
        persisted ledger and budget as its horizontal runs (review R8-5: it used to be an in-memory ledger)."""
        own = self.config.privacy
        return privacy_policy(self.config.allow, epsilon=own.epsilon, delta=own.delta,
                              ledger_path=Path(self.config.party.state_dir) / "privacy-ledger.json",
                              ).sharing_ledgers(self._ledgers)

    def _close(self, message: Message) -> Message:
        context = self._runs.pop(message.run_id, None)
        saved = None
        model = message.meta.get("save_model")
        if context is not None and context.vertical is not None and model and context.vertical.lr.part is not None:
            arrays, meta = context.vertical.lr.part.to_arrays()
            # this party's own store: its part of the model never leaves it
            saved = self.store().register_model(f"{model}:{self.name}", message.run_id, arrays, meta)
        self._forget_secagg(message.run_id)
        log.info("party %s closed run %s", self.name, message.run_id)
        return message.reply("deploy.closed", meta={"saved_version": saved})

    def _forget_secagg(self, run_id: str) -> None:
        """A closed run is complete (the coordinator resumes only unfinished runs): its secure aggregation state
        (per-label records, round locks, cached input vectors) is deleted; a marker keeps refusing the run."""
        folder = Path(self.config.party.state_dir) / "secagg"
        if folder.is_dir():
            from sampan.privacy.secagg.state import FileStateStore, close_run

            close_run(FileStateStore(folder), run_id)

    def _vertical_identity(self) -> tuple[Any, Any]:
        """This organisation's TLS certificate and key sign its run keys; peers' keys are checked against the
        consortium CA and the CRL, which is re-read (and must be current) at every check.

        A vertical or SecAgg run needs `tls.crl`: without it a revoked (e.g. stolen) member certificate
        would still authenticate the keys a coordinator substitutes, so the run is refused."""
        from sampan.crypto.identity import IdentityVerifier, PartyIdentity
        from sampan.deploy.keyfiles import unencrypted_pem

        tls = self.config.tls
        if not tls.crl:
            raise ConfigError(f"party {self.name!r}: tls.crl is not set in its party.toml; vertical and secure "
                              "aggregation runs check peers' certificates against the consortium CRL. Copy the CA's "
                              "crl.pem here and set tls.crl (see `sampan certs crl`)")
        if self._identity is None:
            self._identity = PartyIdentity.from_pem(_read(tls.cert), unencrypted_pem(
                tls.key, what=f"{self.name}'s private key"))
            if self._identity.name != self.name:
                raise ConfigError(f"party {self.name!r}: its certificate {tls.cert} is issued to "
                                  f"{self._identity.name!r}")
        # the highest CRL number accepted is kept in the state folder: an older CRL put back is refused
        return self._identity, IdentityVerifier.from_files(
            tls.ca, tls.crl, state=Path(self.config.party.state_dir) / "revocation_high_water.json")

    def _secagg_client(self, job: dict[str, Any]) -> Any:
        """Secure aggregation signs its keys with the organisation's identity (as the vertical run keys) and keeps
        its per-label record of what it revealed under the state dir (0600 files), so a restarted agent still
        refuses a request that conflicts with one it answered before. Its minimum number of contributors is the
        job's announced one (never below the `[allow]` minimum: `check_job` refused a lower job), enforced by
        the party in every unmasking and signed with the survivor set, whatever the coordinator sends later."""
        from sampan.privacy.secagg import MIN_CONTRIBUTORS, SecAggClient
        from sampan.privacy.secagg.state import FileStateStore

        identity, verifier = self._vertical_identity()
        own = self.config.allow.min_contributors if self.config.allow is not None else None
        minimum = max(MIN_CONTRIBUTORS, int(job.get("secagg_min_contributors") or MIN_CONTRIBUTORS), own or 0)
        return SecAggClient(self.name, identity=identity, verifier=PeerAllowList(verifier, self.name, job["parties"]),
                            state=FileStateStore(Path(self.config.party.state_dir) / "secagg"),
                            min_contributors=minimum)

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
                root_certificates=_read(tls.ca), private_key=unencrypted_pem(tls.key, what=f"{self.name}'s private key"),
                certificate_chain=_read(tls.cert))
        except OSError as exc:
            raise ConfigError(f"party {self.name!r}: cannot read TLS files: {exc}") from None
        except KeyFileError as exc:
            raise ConfigError(f"party {self.name!r}: {exc}") from None
        private_directory(p.state_dir)

        def preflight() -> None:
            probe_coordinator(host, port, ca=_path(tls.ca), cert=_path(tls.cert), key=_path(tls.key),
                              server_name=server_name, expected_name=p.coordinator_name, pin=p.coordinator_pin,
                              crl=_path(tls.crl) if tls.crl else None,
                              state=Path(p.state_dir) / "revocation_high_water.json")  # older CRLs refused

        settings = LinkSettings(name=self.name, address=p.coordinator, coordinator_name=p.coordinator_name,
                                target_name=server_name, limits=p.limits(), backoff_initial_s=p.backoff_initial_s,
                                backoff_max_s=p.backoff_max_s,
                                capabilities=("horizontal", "vertical"), agent="sampan-party/1")
        self.link = PartyLink(settings, self.handle, credentials, preflight=preflight)
        self.link.serve_forever(stop)


def pinned_split(table: PartyData, pin: dict[str, Any], dataset: str) -> tuple[PartyData, PartyData]:
    """(train, holdout) of `table` under a dataset's pin from split-seeds.json ({"key": hex, "test_fraction": f})."""
    holdout = keyed_holdout(table.ids, float(pin["test_fraction"]), bytes.fromhex(pin["key"]), dataset)
    if holdout.all():
        raise ValueError(f"party {table.party!r}: dataset {dataset!r} would keep no training row")
    return table.subset(~holdout), table.subset(holdout)


def keyed_holdout(ids: np.ndarray, fraction: float, key: bytes, dataset: str) -> np.ndarray:
    """Boolean holdout mask: row i is in the holdout iff HMAC-SHA256(key, dataset, id_i) / 2^64 < fraction.

    A Bernoulli(fraction) draw per row, independent of every other row and of the row count, that only the
    key's holder can compute."""
    threshold = int(fraction * 2.0 ** 64)
    prefix = dataset.encode() + b"\0"
    return np.fromiter((int.from_bytes(hmac.new(key, prefix + str(i).encode(), hashlib.sha256).digest()[:8], "big")
                        < threshold for i in ids), dtype=bool, count=len(ids))


def _path(value: str | None) -> Any:
    from pathlib import Path

    return Path(value) if value else None


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
