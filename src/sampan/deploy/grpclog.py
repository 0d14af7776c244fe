"""Route gRPC core's TLS handshake diagnostics into the agent's log, with a plain reason.

A connection with a certificate from an unknown CA, an expired certificate, or bytes that are not
TLS at all is refused inside gRPC's TLS layer, before any Python code sees it; gRPC core reports it
only as a line on the process's stderr. `capture_grpc_core_log` puts a pipe behind file descriptor
2, forwards every line unchanged to the original stderr, and logs each handshake failure on the
``sampan.deploy.security`` logger. (gRPC core does not say which peer it was at its default
verbosity; the reason is there.) `on_refusal(code, reason)` also receives each one: the coordinator
records them in its signed audit log, with the peer given as unknown.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from typing import TextIO

__all__ = ["capture_grpc_core_log", "handshake_reason"]

_HANDSHAKE = re.compile(r"^[IWE]\d{4} .*\] Handshake failed with error (.*)$")
_REASONS = (
    ("unable to get local issuer certificate", "unknown_ca",
     "client certificate is not issued by the consortium CA (unknown CA)"),
    ("self signed certificate", "unknown_ca", "self-signed client certificate (unknown CA)"),
    ("self-signed certificate", "unknown_ca", "self-signed client certificate (unknown CA)"),
    ("certificate has expired", "expired", "client certificate has expired"),
    ("certificate is not yet valid", "not_yet_valid", "client certificate is not yet valid"),
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "no_certificate", "client sent no certificate (mutual TLS is required)"),
    ("WRONG_VERSION_NUMBER", "not_tls", "bytes on the socket are not a TLS handshake (garbage or plaintext)"),
    ("HTTP_REQUEST", "not_tls", "plain HTTP sent to the TLS port"),
    ("EXCESSIVE_MESSAGE_SIZE", "not_tls", "bytes on the socket are not a TLS handshake (garbage)"),
    ("UNEXPECTED_RECORD", "not_tls", "bytes on the socket are not a TLS handshake (garbage)"),
    ("unsupported certificate purpose", "wrong_role", "certificate's key usage does not allow this role"),
)


def handshake_reason(line: str) -> tuple[str, str] | None:
    """(code, reason) for a gRPC core 'Handshake failed' line, or None for any other line."""
    match = _HANDSHAKE.match(line.strip())
    if not match:
        return None
    detail = match.group(1)
    for needle, code, reason in _REASONS:
        if needle in detail:
            return code, reason
    return "tls_handshake", detail.rsplit("OPENSSL_internal:", 1)[-1].strip()


def capture_grpc_core_log(logger: logging.Logger | None = None,
                          on_refusal: Callable[[str, str], None] | None = None) -> TextIO:
    """Start forwarding fd 2 through a filter thread (call once, early, in an agent process).

    Returns a stream on the original stderr, for the agent's own log handler.
    """
    logger = logger or logging.getLogger("sampan.deploy.security")
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                found = handshake_reason(line)
                if found is not None:
                    logger.warning("TLS handshake refused (%s): %s", *found)
                    if on_refusal is not None:
                        try:
                            on_refusal(*found)
                        except Exception:  # noqa: BLE001 - the log line above still has it
                            pass
                else:
                    os.write(original, line.encode("utf-8", "replace"))

    threading.Thread(target=pump, name="sampan-grpc-log", daemon=True).start()
    return os.fdopen(os.dup(original), "w", buffering=1, encoding="utf-8", errors="replace")
