"""The control plane's tables, kept in the run store's database (one database holds runs and consortium state).

Why their own MetaData: the run store (`sampan.runtime.store`) owns its schema and migrations; the control plane
adds its tables on the same engine (`create_tables(store.engine)`) without the store knowing about the web.
Datasets hold a schema and a row count, never rows. Passwords, API tokens and session ids are stored only as
hashes (argon2id for passwords, SHA-256 for the 256-bit random tokens and session ids). The budget table is a
DISPLAY mirror: each party agent's ledger is authoritative and refuses what would exceed it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import CursorResult, Engine

__all__ = ["metadata", "create_tables", "utcnow", "consortia", "members", "users", "api_tokens", "sessions",
           "datasets", "jobs", "approvals", "rules", "runs", "model_stages", "budgets", "JOB_STATUSES", "STAGES",
           "new_id"]

metadata = MetaData()

JOB_STATUSES = ("draft", "awaiting_approval", "approved", "running", "finished", "refused", "cancelled", "failed")
STAGES = ("candidate", "approved", "retired")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _at(name: str = "created_at", nullable: bool = False) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), nullable=nullable, default=utcnow)


consortia = Table(
    "cp_consortia", metadata, _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_by", String(200), nullable=False), _at())

members = Table(
    "cp_members", metadata, _id(),
    Column("consortium_id", Integer, ForeignKey("cp_consortia.id"), nullable=False),
    Column("organisation", String(200), nullable=False),
    Column("role", String(40), nullable=False),  # the organisation's role in the consortium: bank, label_holder, ...
    Column("certificate_pem", Text, nullable=True),
    Column("invited_by", String(200), nullable=False), _at(),
    UniqueConstraint("consortium_id", "organisation", name="cp_members_once"))

users = Table(
    "cp_users", metadata, _id(),
    Column("username", String(200), nullable=False, unique=True),
    Column("organisation", String(200), nullable=True),
    Column("role", String(40), nullable=False),
    Column("password_hash", Text, nullable=True),  # argon2id; None for OIDC-only accounts
    Column("must_change_password", Boolean, nullable=False, default=False),
    Column("totp_secret", String(64), nullable=True),
    Column("totp_confirmed", Boolean, nullable=False, default=False),
    Column("totp_last_step", Integer, nullable=True),  # refuses a code reused in its time step
    Column("totp_pending", String(64), nullable=True),  # a re-enrolment's new seed (sealed) until its code confirms it
    Column("oidc_issuer", String(400), nullable=True),
    Column("oidc_subject", String(400), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True), _at())

api_tokens = Table(
    "cp_api_tokens", metadata, _id(),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("cp_users.id"), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False), _at())

sessions = Table(
    "cp_sessions", metadata, _id(),
    Column("session_sha256", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("cp_users.id"), nullable=False),
    Column("csrf_token", String(100), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    _at("last_seen"), _at())

datasets = Table(
    "cp_datasets", metadata, _id(),
    Column("consortium_id", Integer, ForeignKey("cp_consortia.id"), nullable=False),
    Column("party", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("schema", JSON, nullable=False),  # column name -> type, label column; never a row
    Column("row_count", Integer, nullable=True),  # the size the party publishes; NULL: not published
    Column("registered_by", String(200), nullable=False), _at(),
    UniqueConstraint("consortium_id", "party", "name", name="cp_datasets_once"))

jobs = Table(
    "cp_jobs", metadata, _id(),
    Column("consortium_id", Integer, ForeignKey("cp_consortia.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("config", JSON, nullable=False),
    Column("bindings", JSON, nullable=False),  # party -> dataset, label holder
    Column("spec", JSON, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("status", String(40), nullable=False),
    Column("created_by", String(200), nullable=False), _at(),
    _at("updated_at"))

approvals = Table(
    "cp_approvals", metadata, _id(),
    Column("job_id", Integer, ForeignKey("cp_jobs.id"), nullable=False),
    Column("party", String(200), nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("approval", JSON, nullable=True),  # the party's signed approval, as the agent returned it
    Column("reason", Text, nullable=True),  # a refusal's reason
    Column("decided_by", String(200), nullable=False),
    _at("decided_at"))

rules = Table(
    "cp_rules", metadata, _id(),
    Column("party", String(200), nullable=False),
    Column("rule", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("active", Boolean, nullable=False, default=True), _at())

runs = Table(
    "cp_runs", metadata, _id(),
    Column("job_id", Integer, ForeignKey("cp_jobs.id"), nullable=False),
    Column("run_id", String(64), nullable=False, unique=True),
    Column("spec_hash", String(64), nullable=False),
    Column("started_by", String(200), nullable=False), _at())

model_stages = Table(
    "cp_model_stages", metadata, _id(),
    Column("model_name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("stage", String(20), nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("note", Text, nullable=False, default=""), _at("changed_at"))

budgets = Table(
    "cp_budgets", metadata, _id(),
    Column("party", String(200), nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("total_epsilon", Float, nullable=True),
    Column("total_delta", Float, nullable=True),
    Column("spent_epsilon", Float, nullable=False, default=0.0),
    Column("spent_delta", Float, nullable=False, default=0.0),
    Column("reserved_epsilon", Float, nullable=False, default=0.0),
    Column("reserved_delta", Float, nullable=False, default=0.0),
    Column("history", JSON, nullable=False, default=list),
    _at("updated_at"),
    UniqueConstraint("party", "dataset", name="cp_budgets_once"))


def new_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT made (every table here has an integer `id`)."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])


def create_tables(engine: Engine) -> None:
    """Create the control plane's tables on the store's engine (idempotent)."""
    metadata.create_all(engine)
