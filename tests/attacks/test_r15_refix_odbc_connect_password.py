"""R15-REFIX-2 (fixed: every query value is hidden and scrubbed).

`redacted_url` showed a password passed inside a connection-string query parameter.

Attack / leak (R15-DATA-6's fix): SQLAlchemy's documented way to reach SQL Server through pyodbc with a full ODBC
connection string is ``mssql+pyodbc://?odbc_connect=<url-encoded "DRIVER=...;UID=...;PWD=...">``; libpq's
``options`` parameter can likewise carry ``password=``. The fix hides the URL's password and query parameters whose
NAME looks like a secret (pass, pwd, secret, token, key), but not a secret inside a parameter's VALUE.

Expected safe behaviour: the label a `SqlSource` prints in logs and error messages (``redacted_url``, used when
no name is given) never contains the password, whatever parameter carries it.
What happens: ``PWD=hunter2`` is printed back verbatim (url-encoded), and ``_secrets`` does not scrub it from driver
messages either.
"""

from __future__ import annotations

from urllib.parse import unquote

from sampan.data.sql_source import SqlSource, redacted_url

URL = "mssql+pyodbc://?odbc_connect=DRIVER%3D%7BODBC+Driver+18%7D%3BSERVER%3Ddb%3BUID%3Dsa%3BPWD%3Dhunter2"


def test_odbc_connect_password_is_not_shown() -> None:
    label = SqlSource(URL, "SELECT 1").label
    assert label == redacted_url(URL)
    assert "hunter2" not in unquote(label), f"the SQL source's label shows the password: {label}"
