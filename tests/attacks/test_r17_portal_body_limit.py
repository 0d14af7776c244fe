"""R17-PORTAL-3: anyone, before sign-in and without a CSRF token, makes the portal read a form of any size.

Attack (an outsider, over HTTP): every POST page parses the whole form (`pages_base._prepare` ->
`request.form()`) BEFORE it checks the CSRF token, and neither the portal app nor the embedded server bounds a
request body. Starlette bounds one field (1 MiB) and the number of fields (1,000), not the body: its url-encoded
parser keeps up to 1,000 x 1 MiB = 1 GiB of field values in memory per request, so a few parallel POSTs to
/portal/sign-in (a public page) exhaust the portal's memory; the 403 "form expired" comes only after the whole
body was read. The questionnaire, project and registration forms are capped per field
only after parsing (`text(form, name, limit)`), which bounds nothing.

Fixed (PF2): `sampan.web.portal.body_limit.BodyLimit`, an ASGI middleware on every /portal path
(`PortalSettings.max_body`, 256 KiB by default), refuses a declared Content-Length over the limit with 413 before
reading a byte, and counts a streamed body (no Content-Length) as it arrives, answering 413 once it passes the limit;
the form is never parsed. Legitimate forms (well under the limit) are unaffected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

from _core_fixtures import make_portal  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sampan.web.portal.app import PortalSettings, create_portal_app  # noqa: E402

HUGE = 12 * 1024 * 1024  # 12 MiB: 600 times the largest legitimate form


@pytest.fixture
def app(tmp_path) -> Any:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    portal = make_portal(store, tmp_path / "portal")
    yield create_portal_app(portal, PortalSettings(accounts=portal.accounts))
    store.close()


def test_a_huge_anonymous_form_is_refused_before_it_is_read(app) -> None:
    client = TestClient(app, follow_redirects=False)
    field = b"x" * (1000 * 1024)  # just under Starlette's 1 MiB per field; 12 such fields
    body = b"email=a%40b.example&" + b"&".join(b"f%d=" % i + field for i in range(HUGE // len(field)))
    answer = client.post("/portal/sign-in", content=body,
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413, answer.status_code


def test_a_huge_streamed_form_without_a_length_is_cut(app) -> None:
    client = TestClient(app, follow_redirects=False)
    chunks = [b"email=a%40b.example"] + [b"&f=" + b"x" * 65536 for _ in range(HUGE // 65536)]
    answer = client.post("/portal/sign-in", content=iter(chunks),  # an iterator: chunked, no Content-Length
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413, answer.status_code


def test_a_lying_or_malformed_length_is_refused_and_a_normal_form_is_not(app) -> None:
    client = TestClient(app, follow_redirects=False)
    answer = client.post("/portal/sign-in", content=b"email=x", headers={
        "content-type": "application/x-www-form-urlencoded", "content-length": "not-a-number"})
    assert answer.status_code == 413
    small = client.post("/portal/sign-in", data={"email": "a@b.example", "password": "x" * 20})
    assert small.status_code == 403  # read and parsed: refused only for its missing CSRF token
