"""R15-DATA-6 (fixed): the SQL source's "password hidden" names show the database password (or part of it).

Attack: anyone who reads the party's logs or error replies (an operator without the database secret, a log
shipper, the coordinator when a load fails in a job) learns the warehouse password. `sql_source` promises
"errors name it with the password hidden" and `redacted_url` is "safe for logs and error messages". Safe
behaviour: no part of the password appears in the label or the error. It happened (now fixed: `redacted_url`
hides everything before the last '@' when there are several, masks password-like query parameters, names an
unparseable URL only as such; the source refuses an ambiguous URL before connecting and scrubs the password
from a driver's message):
  - a URL whose password holds an unescaped `@` (`bank:Tr0ub@dor&3@db...`, a common mistake) parses with the
    password cut at the first `@`: the label keeps `dor&3@db.internal`, and the connection error quotes
    `failed to resolve host 'dor&3@db.invalid'` even when the agent names the source `[data.loans] sql`;
  - a password in the query string (`?password=...`, which SQLAlchemy passes to the driver) is not hidden;
  - a URL missing its `://` is shown whole (the fallback splits on `://` and keeps everything).
"""

from __future__ import annotations

import pytest

from sampan.data import DataValidationError, TableSchema
from sampan.data.sql_source import SqlSource, redacted_url
from sampan.data.stream import load_source

SECRET_URLS = [
    ("postgresql+psycopg://bank:Tr0ub@dor&3@db.internal/warehouse", "dor&3"),
    ("postgresql+psycopg://bank@db.internal/warehouse?password=s3cretPW", "s3cretPW"),
    ("postgresql//bank:s3cretPW@db.internal/warehouse", "s3cretPW"),
]


@pytest.mark.parametrize("url, secret", SECRET_URLS)
def test_redacted_url_hides_every_part_of_the_password(url: str, secret: str) -> None:
    assert secret not in redacted_url(url), redacted_url(url)


def test_redacted_url_keeps_what_an_operator_needs() -> None:
    assert redacted_url("postgresql://u:p%40x@h:5432/db?sslmode=require") == \
        "postgresql://u:***@h:5432/db?sslmode=require"
    assert redacted_url("postgresql://u@h/db?password=pw&sslmode=require") == \
        "postgresql://u@h/db?password=***&sslmode=require"


def test_sql_error_does_not_quote_the_password() -> None:
    source = SqlSource("postgresql+psycopg://bank:Tr0ub@dor&3@db.invalid/warehouse", "SELECT 1 AS id, 2 AS x",
                       name="[data.loans] sql")
    with pytest.raises(DataValidationError) as info:
        load_source(source, TableSchema(id="id", features=[{"name": "x"}]), "bank")
    assert "dor&3" not in str(info.value), str(info.value)


@pytest.mark.parametrize("url", ["postgresql+psycopg://bank:s3cretPW@db.invalid/warehouse",
                                 "postgresql+psycopg://bank:s3cret%40PW@db.invalid/warehouse",
                                 "postgresql+psycopg://bank@db.invalid/warehouse?password=s3cretPW"])
def test_driver_message_is_scrubbed_of_the_password(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError

    def echoing(target: str, **_: object) -> None:  # a driver that quotes its whole connection string
        raise ArgumentError(f"cannot connect with {target} (password {sqlalchemy.engine.make_url(target).password!r}"
                            f" {target.partition(':')[2]})")

    monkeypatch.setattr(sqlalchemy, "create_engine", echoing)
    with pytest.raises(DataValidationError) as info:
        load_source(SqlSource(url, "SELECT 1 AS id, 2 AS x"), TableSchema(id="id", features=[{"name": "x"}]),
                    "bank")
    assert "s3cret" not in str(info.value), str(info.value)
