"""The verification portal's tables, kept in the run store's database beside the control plane's.

Why their own MetaData: like `sampan.web.db`, the portal adds its tables on the store's engine
(`create_portal_tables(store.engine)`) without the store or the console knowing about it; every name starts
with ``portal_`` so the two never collide. Secrets at rest: passwords as argon2id hashes, email tokens and session
ids as SHA-256 of 256-bit random values, the applicant's bench token sealed with AES-GCM under a key file in the
portal's folder (`sampan.web.portal.seal`), so a database copy gives none of them away.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.engine import Engine

from sampan.errors import StoreError

__all__ = ["portal_metadata", "create_portal_tables", "users", "email_tokens", "sessions", "companies", "projects",
           "questionnaires", "qualifications", "evaluations", "release_requests", "settings", "rate_keys",
           "rate_events", "ROLES",
           "EVALUATION_STATUSES", "RELEASE_STATUSES", "ACTIVE_EVALUATION",
           "OPEN_RELEASE", "check_portal_schema"]

portal_metadata = MetaData()

ROLES = ("applicant", "reviewer", "admin")
EVALUATION_STATUSES = ("queued", "running", "finished", "failed", "cancelled")
RELEASE_STATUSES = ("pending", "granted", "refused")
ACTIVE_EVALUATION = ("queued", "running")  # at most one per project (partial unique index below)
OPEN_RELEASE = ("pending", "granted")  # at most one per evaluation (partial unique index below)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _at(name: str = "created_at", nullable: bool = False) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), nullable=nullable, default=utcnow if not nullable else None)


companies = Table(
    "portal_companies", portal_metadata, _id(),
    Column("name", String(200), nullable=False),
    Column("registration_number", String(100), nullable=False, default=""),
    Column("country", String(100), nullable=False, default=""),
    Column("address", Text, nullable=False, default=""),
    Column("contact_name", String(200), nullable=False, default=""),
    Column("contact_email", String(254), nullable=False, default=""),
    Column("website", String(400), nullable=False, default=""), _at())

users = Table(
    "portal_users", portal_metadata, _id(),
    Column("email", String(254), nullable=False, unique=True),  # stored lower-case
    Column("password_hash", Text, nullable=False),  # argon2id
    Column("role", String(20), nullable=False),
    Column("company_id", Integer, ForeignKey("portal_companies.id"), nullable=True),
    Column("email_verified_at", DateTime(timezone=True), nullable=True),
    Column("must_change_password", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True), _at())

email_tokens = Table(
    "portal_email_tokens", portal_metadata, _id(),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("portal_users.id"), nullable=False),
    Column("purpose", String(40), nullable=False),  # "verify"
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used", Boolean, nullable=False, default=False), _at())

sessions = Table(
    "portal_sessions", portal_metadata, _id(),
    Column("session_sha256", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("portal_users.id"), nullable=False),
    Column("csrf_secret", String(100), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),  # the absolute end
    _at("last_seen"), _at())

projects = Table(
    "portal_projects", portal_metadata, _id(),
    Column("owner_id", Integer, ForeignKey("portal_users.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("endpoint_url", String(2000), nullable=False),
    Column("tls_cert_pem", Text, nullable=False, default=""),
    Column("bench_token_sealed", Text, nullable=False),  # AES-GCM, never shown back, never logged
    _at())

questionnaires = Table(
    "portal_questionnaires", portal_metadata, _id(),
    Column("project_id", Integer, ForeignKey("portal_projects.id"), nullable=False, unique=True),
    Column("claims", JSON, nullable=False),  # {test_id: true/false}: the tests the vendor claims to pass
    Column("api_docs_url", String(2000), nullable=False, default=""),
    Column("implements_reference_api", Boolean, nullable=False),
    Column("notes", Text, nullable=False, default=""),
    _at("submitted_at"))

qualifications = Table(
    "portal_qualifications", portal_metadata, _id(),
    Column("project_id", Integer, ForeignKey("portal_projects.id"), nullable=False),
    Column("status", String(20), nullable=False),  # passed / failed
    Column("checks", JSON, nullable=False),  # [{name, ok, status, detail, fix}]
    Column("pinned_ip", String(64), nullable=True),  # the address the checks used; the evaluation connects to it
    # sha256 of the server information the check used (endpoint, certificate, sealed token: `base.server_fingerprint`)
    # R17-PORTAL-1: a "passed" row counts only while the project's fingerprint is still this one.
    Column("server_fingerprint", String(64), nullable=True),
    Column("requested_by", String(300), nullable=False, default=""),
    _at("at"))

evaluations = Table(
    "portal_evaluations", portal_metadata, _id(),
    Column("project_id", Integer, ForeignKey("portal_projects.id"), nullable=False),
    Column("profile", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("progress", JSON, nullable=False),  # {"index", "total", "test_id", "done": [{"test_id", "verdict"}]}
    Column("claims", JSON, nullable=True),  # the questionnaire's claims when it started: later edits cannot hide
    Column("results_path", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("started_by", String(300), nullable=False, default=""),
    _at("started_at"), _at("finished_at", nullable=True))

release_requests = Table(
    "portal_release_requests", portal_metadata, _id(),
    Column("evaluation_id", Integer, ForeignKey("portal_evaluations.id"), nullable=False),
    Column("requested_by", Integer, ForeignKey("portal_users.id"), nullable=False),
    Column("invoice_reference", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("decided_by", String(300), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("note", Text, nullable=False, default=""), _at())

# Why partial unique indexes: "no other evaluation running" and "no open request" are checked before the INSERT,
# but two parallel requests can both pass the check (check-then-insert is not atomic on PostgreSQL's READ COMMITTED,
# nor across SQLite connections). The database refuses the second INSERT; the service turns that into Conflict.
_one_active = evaluations.c.status.in_(ACTIVE_EVALUATION)
Index("portal_evaluations_one_active", evaluations.c.project_id, unique=True,
      sqlite_where=_one_active, postgresql_where=_one_active)
_one_open = release_requests.c.status.in_(OPEN_RELEASE)
Index("portal_release_requests_one_open", release_requests.c.evaluation_id, unique=True,
      sqlite_where=_one_open, postgresql_where=_one_open)

# Rate limits (`sampan.web.portal.limits`): one row per limited key ("qualify:project:7", "evaluate:user:3"), locked
# while a request is counted so that parallel requests are counted one after the other; one event per counted
# request (pruned once it is older than the key's window).
rate_keys = Table(
    "portal_rate_keys", portal_metadata,
    Column("key", String(200), primary_key=True),
    _at("touched_at"))

rate_events = Table(
    "portal_rate_events", portal_metadata, _id(),
    Column("key", String(200), ForeignKey("portal_rate_keys.key"), nullable=False),
    _at("at"),
    Index("portal_rate_events_key_at", "key", "at"))

settings = Table(
    "portal_settings", portal_metadata,
    Column("key", String(100), primary_key=True),
    Column("value", JSON, nullable=False),
    _at("updated_at"))


def create_portal_tables(engine: Engine) -> None:
    """Create the portal's tables on the store's engine (idempotent), then refuse a database whose existing portal
    tables an earlier build made without columns or indexes this build needs (`check_portal_schema`)."""
    portal_metadata.create_all(engine)
    check_portal_schema(engine)


def check_portal_schema(engine: Engine) -> None:
    """StoreError naming every portal table that lacks a column or index this build expects.

    Why refuse instead of migrating: the portal was never released, so a database made by an earlier build is a
    developer's; `create_all` adds missing tables but never columns or indexes, and running on such a table would
    half work (an INSERT failing later with a driver error, or a uniqueness rule silently not enforced)."""
    inspector = inspect(engine)
    present_tables = set(inspector.get_table_names())
    missing: list[str] = []
    for table in portal_metadata.sorted_tables:
        if table.name not in present_tables:
            missing.append(f"table {table.name}")
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        missing += [f"table {table.name} has no column {c.name!r}" for c in table.columns if c.name not in columns]
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        missing += [f"table {table.name} has no index {i.name!r}" for i in table.indexes if i.name not in indexes]
    if missing:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreError(f"the portal database {where} was made by an earlier build of Sampan: {'; '.join(missing)}. "
                         "Start the portal with a fresh folder (or a new, empty database), or migrate these tables "
                         "to the current schema (sampan.web.portal.tables) first.")
