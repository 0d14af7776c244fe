"""TOML configs of a deployment: coordinator.toml, party.toml, and the deployment part of a run file.

Relative paths are resolved against the config file's folder. Unknown keys are errors, as in run
configs. A party's data binding (file, format, schema) lives only in its own party.toml; a run
submitted to a coordinator names parties and, optionally, which of their datasets to use.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sampan.compute import ComputeSettings
from sampan.config import ConfigError, RunConfig, VerticalSection, Workflow, parse_config, problems
from sampan.data.schema import TableSchema
from sampan.deploy.allow import AllowSection
from sampan.deploy.identity_source import HsmSection
from sampan.transport.grpc_envelope import Limits

__all__ = ["CoordinatorConfig", "PartyConfig", "RunSpec", "load_coordinator_config", "load_party_config",
           "parse_run_spec", "load_run_spec", "split_address"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSSection(_Strict):
    ca: str = Field(description="consortium CA certificate (PEM)")
    cert: str = Field(description="this member's certificate (PEM)")
    key: str = Field(description="this member's private key (PEM, 0600; made locally, never sent)")
    crl: str | None = Field(None, description="certificate revocation list (PEM), re-read at every check; a "
                            "party needs it for vertical and secure aggregation runs (it checks peers' run keys)")
    issued: str | None = Field(None, description="the CA's signed issuance record (issued.json; coordinator: "
                               "members' key pins; everyone: which names sign only with an HSM signing "
                               "certificate); re-read when it changes")


class LinkLimits(_Strict):
    max_message_mb: float = Field(256, gt=0, le=4096)
    chunk_kb: int = Field(1024, ge=16, le=16384)
    replay_window_s: float = Field(600, ge=10)

    def limits(self) -> Limits:
        return Limits(chunk_bytes=self.chunk_kb * 1024, max_message_bytes=int(self.max_message_mb * (1 << 20)),
                      replay_window_s=self.replay_window_s)


class CoordinatorSection(LinkLimits):
    name: str = Field("coordinator", description="CN on the coordinator's certificate")
    listen: str = "127.0.0.1:7443"
    state_dir: str = "coordinator-state"
    store: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<state_dir>/coordinator.db")
    report_dir: str = "coordinator-reports"
    audit_key: str | None = Field(None, description="the run store's audit-signing key (Ed25519 PEM, 0600); "
                                  "default: $SAMPAN_AUDIT_KEY, else next to a SQLite store")
    request_timeout_s: float = Field(3600, gt=0)
    rejoin_timeout_s: float = Field(30, gt=0, description="how long a disconnected party may take to rejoin before "
                                    "the requests waiting on it fail, naming it (a restarted agent rejoins in seconds)")
    connect_timeout_s: float = Field(120, gt=0, description="how long a run waits for its parties to connect (the "
                                     "missing ones are named in the log and in `sampan runs status` meanwhile)")
    heartbeat_s: float = Field(1.0, ge=0.05, le=60, description="how often parties send a heartbeat")
    silent_after_s: float = Field(6.0, gt=0, description="a connected party silent this long is named and the "
                                  "requests waiting on it fail (a hung agent)")
    crl_check_s: float = Field(2.0, gt=0, le=3600, description="how often the CRL and issuance record are "
                               "checked for changes (live streams of revoked members are then cut)")
    log_file: str | None = None


class MemberSection(_Strict):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["party", "operator"] = "party"
    pin: str | None = Field(None, pattern=r"^sha256:[0-9a-fA-F]{64}$",
                            description="SHA-256 of the member's public key; if absent, taken from the "
                            "coordinator's pins file (`sampan certs repin`) or the CA's issuance record "
                            "(tls.issued), never from the first key that connects")


class CoordinatorConfig(_Strict):
    coordinator: CoordinatorSection = Field(default_factory=lambda: CoordinatorSection.model_validate({}))
    tls: TLSSection
    members: list[MemberSection] = Field(min_length=1)
    control_plane: dict[str, Any] | None = Field(
        None, description="[control_plane]: the HTTP control plane and console `sampan control-plane` serves beside "
        "this coordinator (validated there: sampan.web.control_plane; keys in docs/deploy.md)")

    @model_validator(mode="after")
    def _unique(self) -> CoordinatorConfig:
        names = [m.name for m in self.members]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"member names must be unique; repeated: {repeated}")
        if self.coordinator.name in names:
            raise ValueError(f"{self.coordinator.name!r} is the coordinator's own name")
        return self

    @property
    def store_url(self) -> str:
        return self.coordinator.store or f"sqlite:///{Path(self.coordinator.state_dir) / 'coordinator.db'}"


DataSchema = TableSchema  # earlier name of [data.<name>.schema]: the one table schema class, same object


class BudgetSection(_Strict):
    """[data.<name>.budget]: this dataset's lifetime privacy budget over every job (`sampan.privacy.owner_budget`)."""

    epsilon: float = Field(gt=0, description="lifetime epsilon total of this dataset over all jobs (never refilled)")
    delta: float = Field(1e-4, gt=0, lt=1, description="lifetime delta total (deltas add across jobs)")
    period_days: float | None = Field(None, gt=0, description="with period_epsilon: the window of the rate cap")
    period_epsilon: float | None = Field(None, gt=0, description="most epsilon reserved or spent in any "
                                         "period_days (caps the rate; never refills the total)")

    @model_validator(mode="after")
    def _period(self) -> BudgetSection:
        if (self.period_days is None) != (self.period_epsilon is None):
            raise ValueError("period_days and period_epsilon go together")
        return self


class ConsentSection(_Strict):
    """[consent]: how this party approves jobs (`sampan.deploy.agent_consent`)."""

    mode: Literal["rules", "explicit"] = Field("rules", description="rules: a job a local standing rule ([allow] "
                                               "or an added rule) covers is approved automatically, signed and "
                                               "audited; explicit: every job needs a person's decision")
    console_decisions: bool = Field(False, description="accept decisions (and rules) relayed from the "
                                    "coordinator's console; the console host could fake an operator's click, so a "
                                    "party that does not trust it keeps this false and approves with `sampan "
                                    "consent approve` or by rules")


class DatasetSection(_Strict):
    path: str | None = Field(None, description="a CSV/Parquet file, a folder of them or a glob pattern "
                             "(or give sql instead)")
    format: Literal["csv", "parquet"] | None = None
    sql: str | None = Field(None, description="a SQL query whose rows are the table (instead of path), read "
                            "in chunks on a server-side cursor; needs url or url_env")
    url: str | None = Field(None, description="with sql: the SQLAlchemy database URL, e.g. "
                            "postgresql+psycopg://bank@db.internal/warehouse (no password here: use url_env)")
    url_env: str | None = Field(None, description="with sql: the name of the environment variable that holds "
                                "the database URL, so no password sits in party.toml")
    dtype: Literal["float64", "float32"] = Field("float64", description="how the party holds its features: "
                                                 "float64 (default) or float32 (half the memory)")
    test_ids: str | None = Field(None, description="vertical, at the label holder: a CSV of this dataset's explicit "
                                 "test customers (one id per line), checked at first use; default: a hash of "
                                 "(run seed, id) keyed with the bank's secret split key "
                                 "(<state_dir>/vertical-split-key)")
    schema_: TableSchema = Field(alias="schema")
    budget: BudgetSection | None = Field(None, description="this dataset's lifetime privacy budget; default none "
                                         "(spending is still recorded per job)")
    public_rows: int | None = Field(None, ge=0, description="the size of this dataset the party chooses to publish "
                                    "in its catalogue (e.g. rounded: 'about 40 000'); default none: not published "
                                    "(the exact count is data-dependent and uncharged, so it is never read for "
                                    "the catalogue, R14-CONSENT-5)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSection:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give exactly one of path (a file, folder or glob) and sql (a query)")
        if self.sql is not None:
            if (self.url is None) == (self.url_env is None):
                raise ValueError("sql needs exactly one of url and url_env (the name of an environment variable "
                                 "holding the database URL)")
            if self.format is not None:
                raise ValueError("format is for path; a sql dataset has none")
        elif self.url is not None or self.url_env is not None:
            raise ValueError("url and url_env go with sql, not with path")
        return self

    def database_url(self, party: str, dataset: str) -> str:
        """The SQL dataset's URL: ``url``, or the environment variable ``url_env`` names (read at load)."""
        if self.url is not None:
            return self.url
        value = os.environ.get(self.url_env or "", "")
        if not value:
            raise ConfigError(f"party {party!r}, dataset {dataset!r}: url_env {self.url_env!r} is not set "
                              "(the environment variable that holds the database URL)")
        return value


class PartySection(LinkLimits):
    name: str = Field(min_length=1, max_length=64, description="CN on this party's certificate")
    coordinator: str = Field(description="host:port of the coordinator (this party dials out)")
    coordinator_name: str = Field("coordinator", description="CN expected on the coordinator's certificate")
    server_name: str | None = Field(None, description="TLS name (DNS/IP SAN) to check; default: host of coordinator")
    coordinator_pin: str | None = Field(None, pattern=r"^sha256:[0-9a-fA-F]{64}$")
    state_dir: str = "party-state"
    store: str | None = Field(None, description="where this party keeps its own model parts; "
                              "default sqlite:///<state_dir>/party.db")
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30, gt=0)
    log_file: str | None = None


class PartyPrivacySection(_Strict):
    """[privacy] of party.toml: this party's own privacy policy for horizontal runs (sampan.privacy.party_policy)."""

    epsilon: float | None = Field(None, gt=0, description="this party's own budget over all its runs (its ledger "
                                  "persists in <state_dir>/privacy-ledger.json); default: accounted, no budget")
    delta: float = Field(1e-5, gt=0, lt=1)
    trust_coordinator_for_central_dp3: bool = Field(False, description="accept DP3 mode 'central' (the coordinator "
                                                    "sees each clipped update in clear and adds all the noise)")
    max_test_fraction: float = Field(0.2, gt=0, lt=1, description="largest holdout share of a dataset: holdout rows "
                                     "are outside the DP unit; the fraction and the split's secret key are fixed "
                                     "per dataset at first use (another fraction is then refused); vertical, at "
                                     "the bank: the largest test share a coordinator may ask of the aligned "
                                     "customers")
    max_evaluations: int = Field(20, ge=1, description="most runs this party evaluates a model in, with or "
                                 "without DP, over all its runs and datasets (persisted): each evaluation is an "
                                 "exact release about the holdout rows, which are outside the DP unit")


class PartyConfig(_Strict):
    party: PartySection
    tls: TLSSection
    data: dict[str, DatasetSection] = Field(min_length=1, description="[data.<name>]: this party's datasets")
    privacy: PartyPrivacySection = Field(default_factory=lambda: PartyPrivacySection.model_validate({}),
                                         description="[privacy]: this party's own budget, trust and holdout cap")
    allow: AllowSection | None = Field(None, description="[allow]: the jobs this party accepts (see "
                                       "sampan.deploy.allow; without it: no vertical partner)")
    consent: ConsentSection = Field(default_factory=lambda: ConsentSection.model_validate({}),
                                    description="[consent]: rules or explicit approvals; relayed decisions")
    hsm: HsmSection | None = Field(None, description="[hsm]: the organisation's signing key in a PKCS#11 token "
                                   "(sampan.deploy.identity_source); default: the TLS key file signs")
    compute: ComputeSettings | None = Field(None, description="[compute]: the engine that runs this party's row "
                                            "blocks (local, or Ray on its own machines; sampan.compute)")

    @property
    def store_url(self) -> str:
        return self.party.store or f"sqlite:///{Path(self.party.state_dir) / 'party.db'}"


class DeploySection(_Strict):
    """[deploy] of a submitted run: which members take part and which of their datasets they use.

    `workflow` and `label_holder` are the earlier spellings of `run.workflow` and `vertical.label_holder`:
    still accepted (they must agree), and filled in from the config so `spec.deploy.workflow` stays true."""

    parties: list[str] | None = Field(None, description="default: every party member of the federation "
                                      "(or the names of [[parties]])")
    dataset: str | None = Field(None, description="which [data.<name>] each party uses; default its only one")
    workflow: Workflow | None = Field(None, description="earlier spelling of run.workflow")
    label_holder: str | None = Field(None, description="earlier spelling of vertical.label_holder")
    submitted_by: str | None = Field(None, description="set by the coordinator to the operator who submitted "
                                     "the run (a value in the submitted file is overwritten)")


def _problems(exc: ValidationError, prefix: str = "") -> str:
    text = problems(exc)
    return "; ".join(f"{prefix}.{p}" for p in text.split("; ")) if prefix else text


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None or "://" in value:
        return value
    return str((base / value).resolve())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _resolve_paths(data: dict[str, Any], base: Path, section: str, keys: tuple[str, ...]) -> None:
    block = data.get(section)
    if isinstance(block, dict):
        for key in keys:
            if isinstance(block.get(key), str):
                block[key] = _resolve(base, block[key])


def _resolve_store(data: dict[str, Any], base: Path, section: str) -> None:
    block = data.get(section)
    if isinstance(block, dict) and isinstance(block.get("store"), str) and block["store"].startswith("sqlite:///"):
        path = block["store"].removeprefix("sqlite:///")
        if path and path != ":memory:" and not path.startswith("/"):
            block["store"] = "sqlite:///" + str((base / path).resolve())


def load_coordinator_config(path: str | Path) -> CoordinatorConfig:
    path = Path(path)
    data = _read_toml(path)
    base = path.resolve().parent
    _resolve_paths(data, base, "tls", ("ca", "cert", "key", "crl", "issued"))
    _resolve_paths(data, base, "coordinator", ("state_dir", "report_dir", "log_file", "audit_key"))
    _resolve_store(data, base, "coordinator")
    try:
        config = CoordinatorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from None
    if "state_dir" not in (data.get("coordinator") or {}):  # defaults are relative to the file too
        section = config.coordinator.model_copy(update={"state_dir": str(base / "coordinator-state")})
        config = config.model_copy(update={"coordinator": section})
    return config


def load_party_config(path: str | Path) -> PartyConfig:
    path = Path(path)
    data = _read_toml(path)
    base = path.resolve().parent
    _resolve_paths(data, base, "tls", ("ca", "cert", "key", "crl"))
    _resolve_paths(data, base, "hsm", ("certificate", "pin_file"))
    _resolve_paths(data, base, "party", ("state_dir", "log_file"))
    _resolve_paths(data, base, "compute", ("tls_dir",))
    _resolve_store(data, base, "party")
    for binding in (data.get("data") or {}).values() if isinstance(data.get("data"), dict) else []:
        if isinstance(binding, dict) and isinstance(binding.get("path"), str):
            binding["path"] = _resolve(base, binding["path"])
    try:
        config = PartyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from None
    if "state_dir" not in (data.get("party") or {}):
        section = config.party.model_copy(update={"state_dir": str(base / "party-state")})
        config = config.model_copy(update={"party": section})
    return config


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"address {address!r} must be host:port")
    return host.strip("[]"), int(port)


# --- runs submitted to a coordinator -------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """A deployment run: the submitted file IS a `RunConfig` (parties without paths) plus [deploy]."""

    config: RunConfig
    deploy: DeploySection
    stored: dict[str, Any]         # what the store keeps; parses back to an equal spec (resume)

    @property
    def workflow(self) -> str:
        return self.config.workflow

    @property
    def vertical(self) -> VerticalSection | None:
        """`config.vertical`: the same [vertical] class as in a simulation."""
        return self.config.vertical

    @property
    def party_names(self) -> list[str] | None:
        """The parties named by [deploy] parties or [[parties]]; None = every party member."""
        return list(self.deploy.parties) if self.deploy.parties else None


_FLAT_LR = ("epochs", "batch_size", "learning_rate", "l2", "patience", "min_delta")  # earlier [vertical] spelling


def _merge_legacy(data: dict[str, Any], deploy: dict[str, Any], source: str) -> dict[str, Any]:
    """Move [deploy] workflow/label_holder (the earlier dialect) to run.workflow/vertical.label_holder."""
    workflow, holder = deploy.get("workflow"), deploy.get("label_holder")
    run = data.get("run") if data.get("run") is not None else {}
    if workflow is not None and isinstance(run, dict):
        if run.get("workflow") not in (None, workflow):
            raise ConfigError(f"{source}: deploy.workflow {workflow!r} differs from run.workflow "
                              f"{run['workflow']!r} (give run.workflow only)")
        data["run"] = {**run, "workflow": workflow}
    vertical = data.get("vertical")
    needs_vertical = vertical is None and workflow in ("vertical", "scoring")
    if holder is not None and (isinstance(vertical, dict) or needs_vertical):
        vertical = dict(vertical or {})
        if vertical.get("label_holder") not in (None, holder):
            raise ConfigError(
                f"{source}: deploy.label_holder {holder!r} differs from vertical.label_holder "
                f"{vertical['label_holder']!r} (give vertical.label_holder only)"
            )
        data["vertical"] = {**vertical, "label_holder": holder}
    vertical = data.get("vertical")
    flat = [k for k in _FLAT_LR if isinstance(vertical, dict) and k in vertical]
    if flat and isinstance(vertical, dict) and isinstance(vertical.get("lr", {}), dict):
        data["vertical"] = {
            **{k: v for k, v in vertical.items() if k not in flat},
            "lr": {**vertical.get("lr", {}), **{k: vertical[k] for k in flat}},
        }
    return data


def parse_run_spec(data: dict[str, Any], *, source: str = "<run>") -> RunSpec:
    """A run submitted to a coordinator: a `RunConfig` whose parties have no paths (each agent binds its
    own data) plus [deploy]. A simulated config is accepted once its `path`/`format` lines are removed."""
    data = dict(data)
    raw_deploy = data.pop("deploy", None) or {}
    if isinstance(raw_deploy, dict):
        data = _merge_legacy(data, dict(raw_deploy), source)
    if isinstance(data.get("run"), dict) and data["run"].get("workflow") == "vertical" and "vertical" not in data:
        raise ConfigError(f"{source}: a vertical run needs [vertical] with label_holder (the party holding the label)")
    try:
        deploy = DeploySection.model_validate(raw_deploy)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problems(exc, 'deploy')}") from None
    if "compute" in data:  # an engine runs code inside a party: only that party's own party.toml chooses it
        raise ConfigError(f"{source}: [compute] is chosen by each party in its own party.toml, not by a submitted run")
    config = parse_config(data, source=source, deployment=True)
    named = [p.name for p in config.parties]
    if deploy.parties and named and sorted(deploy.parties) != sorted(named):
        raise ConfigError(f"{source}: deploy.parties {deploy.parties} differ from the [[parties]] names {named}")
    holder = config.vertical.label_holder if config.vertical is not None else None
    parties = deploy.parties or named or None
    if holder is not None and parties and holder not in parties:
        raise ConfigError(f"{source}: vertical.label_holder {holder!r} is not among the run's parties {parties}")
    deploy = deploy.model_copy(update={"workflow": config.workflow, "label_holder": holder, "parties": parties})
    stored = config.to_dict()
    stored["deploy"] = deploy.model_dump(mode="json", exclude_none=True)
    return RunSpec(config, deploy, stored)


def load_run_spec(path: str | Path) -> RunSpec:
    return parse_run_spec(_read_toml(Path(path)), source=str(path))
