"""The HTML and JSON report of one QR verification (`sampan qr verify` output -> `sampan qr report`).

A verdict JSON is checked field by field before anything is rendered (a report built from a tampered or truncated
file would mislead the reader), and every value is HTML-escaped: the decoded text comes from a scanned code, i.e.
from whoever printed it, so it is untrusted input.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from sampan.errors import DataError

__all__ = ["VERDICT_FORMAT", "ReportError", "load_verdict", "render_html"]

VERDICT_FORMAT = "sampan-qr-verdict/1"
_VERDICTS = ("genuine", "suspicious")
_MAX_FILE = 1 << 20
_SIMULATED = ("Copy-detection thresholds were measured on a simulated print-and-capture channel only, not on real "
              "printers and phones; calibrate them for the printer and phones in use.")


class ReportError(DataError):
    """A verdict file that is not a `sampan qr verify` verdict; the message names the file and the field."""


def load_verdict(path: str | Path) -> dict[str, Any]:
    """Read and check a verdict JSON written by `sampan qr verify`."""
    p = Path(path)
    try:
        raw = p.read_bytes()[: _MAX_FILE + 1]
    except FileNotFoundError:
        raise ReportError(f"verdict {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise ReportError(f"verdict {str(p)!r} is a folder, not a JSON file") from None
    if len(raw) > _MAX_FILE:
        raise ReportError(f"verdict {str(p)!r} is larger than {_MAX_FILE} bytes")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"verdict {str(p)!r} is not JSON ({exc})") from None
    check_verdict(doc, str(p))
    return dict(doc)


def check_verdict(doc: object, where: str = "verdict") -> None:
    """Refuse a document without the fields the report shows (the message names the field)."""
    if not isinstance(doc, dict):
        raise ReportError(f"{where}: the top level must be a JSON object")
    if doc.get("format") != VERDICT_FORMAT:
        raise ReportError(f"{where}: field 'format' must be {VERDICT_FORMAT!r}")
    if doc.get("verdict") not in _VERDICTS:
        raise ReportError(f"{where}: field 'verdict' must be one of {list(_VERDICTS)}")
    for name, kind in (("image", str), ("reasons", list), ("checks", dict)):
        if not isinstance(doc.get(name), kind):
            raise ReportError(f"{where}: field {name!r} must be a {kind.__name__}")
    if not all(isinstance(r, str) for r in doc["reasons"]):
        raise ReportError(f"{where}: field 'reasons' must be a list of strings")


def _row(name: str, value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    return f"<tr><th>{html.escape(name)}</th><td>{html.escape(shown)}</td></tr>"


def render_html(doc: dict[str, Any]) -> str:
    """A self-contained HTML page (no scripts, no external resources)."""
    check_verdict(doc)
    genuine = doc["verdict"] == "genuine"
    colour = "#1b7a1b" if genuine else "#b00020"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in doc["reasons"]) or "<li>no finding</li>"
    checks = "".join(_row(k, v) for k, v in doc["checks"].items())
    code = doc.get("code")
    code_rows = "".join(_row(k, v) for k, v in code.items()) if isinstance(code, dict) else ""
    cdp = doc["checks"].get("cdp")
    note = f"<p class='note'>{html.escape(_SIMULATED)}</p>" if isinstance(cdp, dict) else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        "<title>QR verification report</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;"
        "vertical-align:top}td{font-family:monospace;word-break:break-all}.note{color:#555;font-size:.9em}</style>"
        "</head><body>\n"
        f"<h1>QR verification: <span style='color:{colour}'>{html.escape(doc['verdict'])}</span></h1>\n"
        f"<p>Image: <code>{html.escape(doc['image'])}</code>"
        f"{' &middot; checked ' + html.escape(str(doc['checked_at'])) if doc.get('checked_at') else ''}</p>\n"
        f"<h2>Reasons</h2><ul>{reasons}</ul>\n"
        f"<h2>Code</h2><table>{code_rows or _row('code', 'not decoded')}</table>\n"
        f"<h2>Checks</h2><table>{checks}</table>\n{note}\n</body></html>\n"
    )
