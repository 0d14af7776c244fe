"""Reading a platform's HTTP answers without trusting it: a size cap, a deadline for the whole call, and the
rule for bearer tokens over plain http. Shared by BenchmarkClient and the catalogue's raw `Api` (the runner's).

A platform under test (an applicant's endpoint, once the portal is live) chooses how large and how slow its
answers are; httpx alone buffers any size and bounds each read, not the call. `read_bounded` streams the body,
stops past a cap, and checks a deadline between chunks (a silent read still waits for httpx's per-read timeout,
and the headers are bounded by that timeout and h11's 16 KiB header limit, not by the deadline).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("sampan.verify.bounded")
PlainHttp = Literal["allow", "warn", "refuse"]
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # 200,000 scores are a few MB: the largest answer the API has
MAX_ERROR_BYTES = 64 * 1024


class ResponseRefused(Exception):
    """`read_bounded` stopped reading: ``code`` is "too_large" or "timeout"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_bounded(http: httpx.Client, method: str, url: str, *, seconds: float,
                 max_bytes: int = MAX_RESPONSE_BYTES, max_error_bytes: int = MAX_ERROR_BYTES,
                 **request: Any) -> httpx.Response:
    """Send one request and read its answer within ``seconds`` (checked between chunks) and ``max_bytes``
    (ResponseRefused past either); an error answer (status >= 400) is cut at ``max_error_bytes`` instead of
    refused. httpx's own errors pass through. The body is decoded (gzip...) before it is counted."""
    deadline = time.monotonic() + seconds
    with http.stream(method, url, **request) as response:
        error = response.status_code >= 400
        cap = max_error_bytes if error else max_bytes
        declared = response.headers.get("content-length", "")
        if not error and declared.isdigit() and int(declared) > cap:
            raise ResponseRefused("too_large", f"the answer announces {declared} bytes, over the {cap} accepted")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                if error:
                    del body[cap:]
                    break
                raise ResponseRefused("too_large", f"the answer is longer than the {cap} bytes accepted")
            if time.monotonic() > deadline:
                raise ResponseRefused("timeout", f"the answer was still coming after {seconds:g} s")
        response._content = bytes(body)  # what .content/.json() read: the stream is consumed and closed
    return response


def plaintext_token_check(url: str, policy: PlainHttp, who: str) -> None:
    """Refuse or log a plain-http URL to a host other than loopback (the bearer token would travel in clear);
    any scheme but http/https is refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{who}: {url!r} is not an http(s) URL")
    if parts.scheme == "https" or policy == "allow" or _loopback(parts.hostname or ""):
        return
    message = f"{who}: {url} is plain http to a host other than loopback: the bearer token travels in clear"
    if policy == "refuse":
        raise ValueError(message + " (use https)")
    log.warning("%s", message)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["read_bounded", "ResponseRefused", "plaintext_token_check", "PlainHttp", "MAX_RESPONSE_BYTES",
           "MAX_ERROR_BYTES"]
