"""A party's table from a SQL query (PostgreSQL, SQLite, anything SQLAlchemy speaks), as Arrow batches.

The query runs on a server-side cursor (`stream_results`) and comes back ``chunk_rows`` rows at a time, so a
bank's table never sits whole in the party's memory before validation. SQLAlchemy is imported here only,
when a SQL source is opened. The URL may carry a password, so errors name it with the password hidden
(`redacted_url`: parsed by SQLAlchemy, password and password-like query parameters as ``***``; a URL that
does not parse is never echoed) and a driver's message is scrubbed of the password before it is quoted. A
password holding an unescaped '@' is refused before connecting (SQLAlchemy would take its tail for the host).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa

from sampan.data._columns import _as_text
from sampan.data.sources import SourcePart, _repeated
from sampan.data.table import DataValidationError

__all__ = ["UNPARSEABLE", "SqlSource", "redacted_url"]


UNPARSEABLE = "(a database URL that does not parse; expected dialect+driver://user:password@host/database)"


def _ambiguous(url: str) -> bool:
    """More than one '@' before the query: a password with an unescaped '@', which SQLAlchemy cuts at the
    first one, taking the rest of the password for the host (review R15-DATA-6)."""
    return url.partition("://")[2].partition("?")[0].count("@") > 1


_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key")  # in a query parameter's name or value: hidden


def _hidden_param(name: str, value: Any) -> bool:
    """A parameter to hide: a secret-like name, or a value that itself carries one (``odbc_connect=...PWD=...``)."""
    texts = [name] + [str(v) for v in (value if isinstance(value, tuple) else (value,))]
    return any(word in text.lower() for text in texts for word in _SECRET_WORDS)


def redacted_url(url: str) -> str:
    """The URL with its password and every secret-like query parameter as ``***`` (by name, or by a value that
    carries one, e.g. ``odbc_connect=...PWD=...``: review R15-REFIX-2), safe for logs and error messages; never
    the raw URL: one that does not parse is named only as such."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not all(ch.isalnum() or ch in "+_" for ch in scheme):
        return UNPARSEABLE
    if _ambiguous(url):  # everything before the last '@' may be password
        return f"{scheme}://***@{rest.partition('?')[0].rpartition('@')[2]}"
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        hidden = {k: "***" for k, v in parsed.query.items() if _hidden_param(k, v)}
        return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # noqa: BLE001 - an unparseable URL: show only its scheme
        return scheme + "://..."


def _secrets(url: str) -> list[str]:
    """The texts an error message must not quote: the URL, its password (raw and decoded), secret params."""
    out = [url]
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        out += [str(parsed.password or "")]
        for name, value in parsed.query.items():  # a hidden parameter's value, whole (R15-REFIX-2)
            if _hidden_param(name, value):
                out += [str(v) for v in (value if isinstance(value, tuple) else (value,))]
    except Exception:  # noqa: BLE001 - nothing parsed: the raw URL alone is scrubbed
        pass
    userinfo = url.partition("://")[2].partition("?")[0].rpartition("@")[0]
    out.append(userinfo.partition(":")[2])
    return sorted({t for t in out if t}, key=len, reverse=True)


def _driver_url(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg (3) when only that one is installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _text(v: Any) -> str | None:
    """A cell's canonical text, as a typed chunk of it would give (`_arrow_checks.canonical_text`: 7.0 -> "7",
    a decimal as its float): an id's text must not depend on which rows share its chunk (review R15-DATA-9)."""
    if v is None:
        return None
    return _as_text(float(v) if isinstance(v, Decimal) else v)


def _column(values: tuple[Any, ...]) -> pa.Array:
    """One chunk's column as Arrow; a column of mixed Python types (SQLite allows it) as canonical text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_text(v) for v in values], type=pa.string())


class SqlSource:
    """The rows of one SQL query, fetched in chunks from a server-side cursor."""

    def __init__(self, url: str, query: str, *, name: str | None = None, chunk_rows: int = 1 << 16) -> None:
        self.url, self.query, self.chunk_rows = url, query, chunk_rows
        self.label = name or redacted_url(url)

    def row_hint(self, first_batch_rows: int | None) -> int | None:
        return None  # a COUNT(*) would run the query twice; the loader grows its arrays instead

    def parts(self, party: str, text_columns: Collection[str], all_text: bool) -> Iterator[SourcePart]:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        def fail(exc: Exception) -> DataValidationError:
            detail = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
            for secret in _secrets(self.url):
                detail = detail.replace(secret, "***")
            return DataValidationError(f"cannot run the SQL query: {type(exc).__name__}: {detail}",
                                       party=party, path=self.label)

        if _ambiguous(self.url):
            raise DataValidationError("the database URL holds more than one '@' before its query; percent-encode "
                                      "an '@' in the user or password as %40", party=party, path=self.label)
        try:
            engine = create_engine(_driver_url(self.url))
        except (ArgumentError, SQLAlchemyError, ImportError, ValueError) as exc:
            raise fail(exc) from None
        try:
            with engine.connect() as conn:
                try:
                    result = conn.execution_options(stream_results=True, max_row_buffer=self.chunk_rows) \
                        .execute(text(self.query))
                except SQLAlchemyError as exc:
                    raise fail(exc) from None
                names = list(result.keys())
                _repeated(names, party, self.label)  # `SELECT a.x, b.x`: the files' clear header error (R15-DATA-8)

                def batches() -> Iterator[pa.RecordBatch]:
                    try:
                        for rows in result.partitions(self.chunk_rows):
                            columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
                            yield pa.RecordBatch.from_arrays([_column(c) for c in columns], names=names)
                    except SQLAlchemyError as exc:
                        raise fail(exc) from None

                yield SourcePart(self.label, names, batches)
        except SQLAlchemyError as exc:
            raise fail(exc) from None
        finally:
            engine.dispose()
