"""R16-API-5..8: answers a platform under test can craft that BenchmarkClient mishandles (all through httpx's
MockTransport, the client's public `transport=` hook).

- API-5: an error body of deeply nested JSON (`[[[[...`) escapes as a RecursionError traceback from
  `_api_error` (json.loads raises RecursionError, not ValueError), not a VerifyError(bad_response).
- API-6: `NaN` / `Infinity` (not JSON at all, RFC 8259) are accepted in responses, so scores, metrics, epsilon
  spent and round seconds can be non-finite; a check written `if spent > claimed: fail` then passes on NaN.
  Requests refuse non-finite numbers (TableData); answers should too (bad_response naming the field).
- API-7: a platform can send the client-only codes (`timeout`, `tls`, `unreachable`, `version`) or any string as
  `error.code`, and the client reports it as its own observation; the message is unbounded (5 MB lands in
  the VerifyError and from there in reports). Codes outside the API's closed list should be bad_response,
  messages cut to a bound.
- API-8: two X-Bench-API-Version headers (1.0 and 2.0) pass the major check (httpx joins them: "1.0, 2.0").
Fixed: these are regular tests now."""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")

from sampan.verify.api import VERSION_HEADER, TableData  # noqa: E402
from sampan.verify.client import BenchmarkClient, VerifyError  # noqa: E402

INFO = b'{"api_version": "1.0", "platform": "p", "platform_version": "1"}'


def _client(status: int, content: bytes, headers: list[tuple[str, str]] | None = None) -> BenchmarkClient:
    sent = headers if headers is not None else [(VERSION_HEADER, "1.0")]
    return BenchmarkClient("http://platform", "t",
                           transport=httpx.MockTransport(lambda _: httpx.Response(status, content=content,
                                                                                  headers=sent)))


def test_nested_error_body_is_a_bad_response() -> None:
    with _client(500, b"[" * 100_000) as client:
        try:
            client.info()
        except VerifyError as refused:
            assert refused.code == "bad_response"
        except RecursionError:
            pytest.fail("RecursionError traceback from the client instead of VerifyError(bad_response)")


@pytest.mark.parametrize("body", [
    b'{"scores": [NaN]}',
    b'{"job_id": "j", "metrics": {"auc": NaN}}',
    b'{"job_id": "j", "epsilon_spent": {"bank": NaN}}',
    b'{"job_id": "j", "rounds": [{"round": 1, "seconds": Infinity}]}',
    b'{"features": ["x"], "coefficients": [Infinity], "intercept": 0.0}',
], ids=["scores", "metrics", "epsilon_spent", "seconds", "coefficients"])
def test_non_finite_numbers_in_answers_are_bad_responses(body: bytes) -> None:
    with _client(200, body) as client, pytest.raises(VerifyError) as refused:
        if b"scores" in body:
            client.predict("j", TableData(columns=["x"], rows=[[1.0]]))
        elif b"coefficients" in body:
            client.model("j")
        else:
            client.results("j")
    assert refused.value.code == "bad_response"


def test_platform_error_codes_are_the_closed_list_and_messages_bounded() -> None:
    for code in ("timeout", "tls", "unreachable", "version", "all_good"):
        body = json.dumps({"error": {"code": code, "message": "m"}}).encode()
        with _client(409, body) as client, pytest.raises(VerifyError) as refused:
            client.info()
        assert refused.value.code == "bad_response", f"the platform's code {code!r} was passed on as the client's"
    body = json.dumps({"error": {"code": "conflict", "message": "x" * 5_000_000}}).encode()
    with _client(409, body) as client, pytest.raises(VerifyError) as refused:
        client.info()
    assert len(str(refused.value)) < 10_000


def test_conflicting_version_headers_are_refused() -> None:
    with _client(200, INFO, [(VERSION_HEADER, "1.0"), (VERSION_HEADER, "2.0")]) as client, \
            pytest.raises(VerifyError) as refused:
        client.info()
    assert refused.value.code == "version"
