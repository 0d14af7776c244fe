"""Qualification check: can the portal evaluate this endpoint? Each failure says what failed and how to fix it.

Before the portal spends an evaluation on an applicant's endpoint it checks, in order: the address is one the
portal may reach (`egress.EgressPolicy`: public, or allow-listed by an administrator), something listens there,
TLS is right (certificate valid now, issued for the host name, chaining to the certificate or CA the applicant
supplied; plain http only on an allow-listed loopback address, the embedded mode's own platforms), GET
/bench/v1/info answers with a supported Benchmark API version, the token is accepted, and a smoke job (two
platform-run parties, 40 synthetic rows, one round: the smallest job the API allows) finishes within a bound.
The first failure stops the check; the later checks are reported as skipped.

Threat model: the endpoint is the applicant's and may be hostile. Every connection goes to the address pinned in
the first check (no second DNS answer: no rebinding), no redirect is followed, every answer is read with a size
cap and a deadline (`bounded.read_bounded` through `client.BenchmarkClient`), and the whole check is bounded by
``timeout_s`` per call and ``smoke_timeout_s`` for the job. The smoke job's rows are synthetic (no record of anyone
crosses to the applicant). The token is never written to the report.
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sampan.verify.api import API_VERSION, VERSION_HEADER, PartyRegistration, PlatformInfo, TableData, TaskSpec
from sampan.verify.datasets import LABEL
from sampan.verify.egress import EgressPolicy, EgressRefused, PinnedEndpoint, pinned_transport

__all__ = ["CHECKS", "Check", "QualificationReport", "qualify", "tls_context"]

CHECKS = ("address", "reachable", "tls", "api_version", "token", "smoke_job")
log = logging.getLogger("sampan.portal")
_SMOKE_ROWS = 40


@dataclass(frozen=True)
class Check:
    """One step: ``ok``; ``detail`` says what was seen; ``fix`` (on a failure) how to repair it, for the vendor;
    ``skipped``: not run because an earlier check failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass(frozen=True)
class QualificationReport:
    """All checks in order; ``passed`` when every one passed. ``pinned_ip``: the address the checks used (the
    evaluation connects to the same one)."""

    passed: bool
    checks: list[Check]
    pinned_ip: str | None = None
    api_version: str | None = None
    platform: str | None = None
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def failed(self) -> Check | None:
        """The check that failed (None when all passed)."""
        return next((c for c in self.checks if not c.ok and not c.skipped), None)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks], "pinned_ip": self.pinned_ip,
                "api_version": self.api_version, "platform": self.platform, "at": self.at}


class _Failed(Exception):
    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


def tls_context(tls_cert_pem: str | None) -> ssl.SSLContext:
    """Verify the server against ``tls_cert_pem`` (the CA that issued its certificate, or its own self-signed
    certificate: what the evaluation's client trusts too, `catalogue.http.TargetTLS.ca_file`) or, when none is
    given, the system's CAs; TLS 1.2 or later, host name checked. ValueError when the PEM is not a certificate."""
    ctx = ssl.create_default_context()
    if tls_cert_pem and tls_cert_pem.strip():
        ctx = ssl.create_default_context(cadata=tls_cert_pem)  # ssl.SSLError (a ValueError) if not PEM certs
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _root_url(url: str) -> str:
    root = url.strip().rstrip("/")
    return root[: -len("/bench/v1")] if root.endswith("/bench/v1") else root


def _check_address(url: str, policy: EgressPolicy) -> tuple[PinnedEndpoint, str]:
    try:
        pinned = policy.pin(url)
    except EgressRefused as exc:
        if exc.address:  # the applicant sees the class only (R17-PORTAL-7); the operator's log keeps the address
            log.info("qualification: %s refused: it resolves to %s (%s)", exc.host, exc.address, exc.reason)
        if exc.reason in ("scheme", "userinfo", "malformed"):
            raise _Failed(str(exc), "Enter the endpoint as https://host:port (the Benchmark API's root URL), "
                          "without a user name or password.") from None
        if exc.reason == "unresolved":
            raise _Failed(str(exc), "Check the host name for typing errors and that it is published in public "
                          "DNS.") from None
        raise _Failed(str(exc), "Give an endpoint on a public address; an internal platform needs an "
                      "administrator to allow-list its address first.") from None
    note = " (allow-listed by an administrator)" if pinned.allow_listed else ""
    return pinned, f"{pinned.host} -> {pinned.ip}{note}; every later connection goes to this address"


def _check_reachable(pinned: PinnedEndpoint, timeout_s: float) -> str:
    start = time.monotonic()
    try:
        with socket.create_connection((pinned.ip, pinned.port), timeout=timeout_s):
            pass
    except ConnectionRefusedError:
        raise _Failed(f"nothing accepts connections on {pinned.host} port {pinned.port} ({pinned.ip})",
                      "Check the port in the endpoint URL and that the Benchmark API server is running.") from None
    except TimeoutError:
        raise _Failed(f"no answer from {pinned.host} port {pinned.port} within {timeout_s:g} s",
                      "Open this port to the portal in your firewall, or correct the port number.") from None
    except OSError as exc:
        raise _Failed(f"cannot connect to {pinned.host} port {pinned.port}: {exc.strerror or exc}",
                      "Check that the host is online and its network lets the portal in.") from None
    return f"TCP connection to {pinned.address} in {time.monotonic() - start:.2f} s"


_VERIFY_FIXES: dict[int, str] = {
    10: "The server's certificate has expired: renew it and restart the server.",
    9: "The server's certificate is not valid yet: check the server's clock and the certificate's start date.",
    18: "The server presents a self-signed certificate you did not supply: upload that certificate in the project, "
        "or use one from a public CA.",
    19: "The server's chain ends in a CA you did not supply: upload that CA certificate in the project.",
    20: "The server's certificate does not chain to the certificate you supplied: upload the CA certificate that "
        "issued it (or the server's own certificate if it is self-signed), and make the server send its "
        "intermediate certificates.",
    21: "The server's certificate does not chain to the certificate you supplied: upload the CA certificate that "
        "issued it (or the server's own certificate if it is self-signed).",
    62: "The certificate is not issued for this host name: use a certificate whose subjectAltName lists it, or "
        "enter the endpoint under a name the certificate lists.",
    64: "The certificate is not issued for this IP address: use a certificate whose subjectAltName lists it, or "
        "enter the endpoint under the host name the certificate lists.",
}


def _peer_expiry(pinned: PinnedEndpoint, timeout_s: float) -> str:
    """The server certificate's validity period, read without checking it (to explain a failure)."""
    try:
        from cryptography import x509

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((pinned.ip, pinned.port), timeout=timeout_s) as raw:
            with ctx.wrap_socket(raw, server_hostname=None if pinned.host_is_ip else pinned.host) as tls:
                der = tls.getpeercert(binary_form=True)
        if not der:
            return ""
        cert = x509.load_der_x509_certificate(der)
        return (f" (the server's certificate: subject {cert.subject.rfc4514_string()}, valid "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
    except Exception:  # noqa: BLE001 (only an explanation; the failure itself is already known)
        return ""


def _check_tls(pinned: PinnedEndpoint, ctx: ssl.SSLContext, timeout_s: float) -> str:
    if pinned.scheme == "http":
        if pinned.is_loopback and pinned.allow_listed:
            return "plain http on an allow-listed loopback address (the portal's own local platform): no TLS"
        raise _Failed(f"{pinned.url} is plain http: the token and the evaluation's data would travel unencrypted",
                      "Serve the Benchmark API over https and enter the https:// URL.")
    try:
        with socket.create_connection((pinned.ip, pinned.port), timeout=timeout_s) as raw:
            with ctx.wrap_socket(raw, server_hostname=pinned.host) as tls:
                version = tls.version() or "?"
                cert = tls.getpeercert() or {}
    except ssl.SSLCertVerificationError as exc:
        fix = _VERIFY_FIXES.get(exc.verify_code, "Make the server present a valid certificate for this host "
                                "that chains to the certificate you supplied.")
        raise _Failed(f"the server's certificate was refused: {exc.verify_message}"
                      f"{_peer_expiry(pinned, timeout_s)}", fix) from None
    except ssl.SSLError as exc:
        raise _Failed(f"the TLS handshake failed: {exc.reason or exc}",
                      "Serve TLS 1.2 or 1.3 on this port (is it plain http, or an old TLS version?).") from None
    except OSError as exc:
        raise _Failed(f"the TLS connection failed: {exc}", "Check that this port serves TLS.") from None
    until = cert.get("notAfter", "?")
    return f"{version}, certificate for {pinned.host} valid until {until}, chain verified"


def _client(pinned: PinnedEndpoint, token: str, ctx: ssl.SSLContext, timeout_s: float) -> Any:
    from sampan.verify.client import BenchmarkClient

    root = f"{pinned.scheme}://{'[' + pinned.host + ']' if ':' in pinned.host else pinned.host}:{pinned.port}"
    return BenchmarkClient(root, token, timeout=timeout_s, plain_http="allow",  # http was judged by the tls check
                           transport=pinned_transport(pinned, verify=ctx))


def _info_answer(client: Any) -> Any:
    from sampan.verify.client import VerifyError

    try:
        return client.raw("GET", "/info")
    except VerifyError as exc:
        raise _Failed(f"GET /bench/v1/info: {exc.detail}", "Make GET /bench/v1/info answer within the time "
                      "limit with a small JSON body.") from None


def _check_version(response: Any) -> tuple[str, str]:
    from sampan.verify.client import major

    versions = response.headers.get_list(VERSION_HEADER)
    if not versions:
        hint = " (HTTP 404: is the URL the API's root, without /bench/v1?)" if response.status_code == 404 else ""
        raise _Failed(f"GET /bench/v1/info answered HTTP {response.status_code} without the {VERSION_HEADER} "
                      f"header{hint}", f"Enter the root URL of a Benchmark API {API_VERSION} server, which sends "
                      f"{VERSION_HEADER} on every answer.")
    version = versions[0].strip()
    if major(version) != major(API_VERSION):
        raise _Failed(f"the platform speaks Benchmark API {version}; the portal speaks {API_VERSION}",
                      f"Deploy a server implementing Benchmark API {major(API_VERSION)}.x.")
    return version, f"{VERSION_HEADER}: {version} (supported: {major(API_VERSION)}.x)"


def _check_token(response: Any) -> PlatformInfo:
    from sampan.verify.client import major

    if response.status_code in (401, 403):
        raise _Failed(f"the platform refused the token (HTTP {response.status_code})",
                      "Enter the bearer token your Benchmark API server expects, in the project's settings.")
    if response.status_code != 200:
        raise _Failed(f"GET /bench/v1/info answered HTTP {response.status_code}",
                      "Make GET /bench/v1/info answer 200 with the platform's PlatformInfo.")
    try:
        info = PlatformInfo.model_validate_json(response.content)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise _Failed(f"/info is not a valid PlatformInfo ({first[1] if len(first) > 1 else first[0]})",
                      "Answer GET /bench/v1/info with the PlatformInfo fields of the reference API.") from None
    if major(info.api_version) != major(API_VERSION):
        raise _Failed(f"/info reports api_version {info.api_version}; the portal speaks {API_VERSION}",
                      f"Deploy a server implementing Benchmark API {major(API_VERSION)}.x.")
    return info


def _smoke_rows(with_label: bool = True) -> TableData:
    rows: list[list[float | str | None]] = []
    for i in range(_SMOKE_ROWS):  # synthetic, deterministic: no one's record
        x1, x2 = (i % 10) / 10, ((i * 7) % 10) / 10
        rows.append([x1, x2, float(x1 + x2 > 0.9)] if with_label else [x1, x2])
    return TableData(columns=["x1", "x2", LABEL] if with_label else ["x1", "x2"], rows=rows)


def _check_smoke(client: Any, info: PlatformInfo, smoke_timeout_s: float) -> str:
    from sampan.verify.client import VerifyError

    if "horizontal" not in info.capabilities:
        return "the platform offers no horizontal jobs: the smoke job is left to the evaluation"
    start = time.monotonic()
    job_id = ""
    try:
        project = client.create_project(secrets.token_hex(8))
        parties = ["smoke_a", "smoke_b"]
        for name in parties:
            client.register_party(project.project_id, PartyRegistration(
                name=name, role="data_owner", operated_by="platform", data=_smoke_rows()))
        spec = TaskSpec(kind="horizontal", label=LABEL, features={p: ["x1", "x2"] for p in parties}, rounds=1,
                        batch_size=16, seed=secrets.randbelow(2**62), timeout_s=max(1, int(smoke_timeout_s)))
        job = client.submit_job(project.project_id, spec)
        job_id = job.job_id
        job = client.wait_for(job_id, max(0.0, smoke_timeout_s - (time.monotonic() - start)))
    except VerifyError as exc:
        if exc.code == "timeout" and job_id:
            try:
                client.cancel(job_id)
            except VerifyError:
                pass
            raise _Failed(f"the smoke job (2 parties, {_SMOKE_ROWS} rows, 1 round) did not finish within "
                          f"{smoke_timeout_s:g} s", "Check that your platform runs jobs (its workers are up) "
                          "and that a one-round job finishes in well under a minute.") from None
        raise _Failed(f"the smoke job failed at {exc.endpoint}: {exc.detail}",
                      "Make the endpoint named accept the reference API's request (see the Benchmark API "
                      "documentation for its body).") from None
    if job.state != "succeeded":
        why = f": {job.error.code}: {job.error.message}" if job.error is not None else ""
        raise _Failed(f"the smoke job ended {job.state}{why}", "Look in your platform's log for why a one-round "
                      "horizontal logistic regression job fails, and fix it.")
    return f"a one-round job of 2 parties finished in {time.monotonic() - start:.1f} s"


def qualify(endpoint_url: str, token: str, tls_cert_pem: str | None, policy: EgressPolicy, *,
            timeout_s: float = 10.0, smoke_timeout_s: float = 60.0, smoke: bool = True) -> QualificationReport:
    """Run the checks of the module note against ``endpoint_url`` (the API's root; a trailing /bench/v1 is
    accepted) and return every check's result; never raises for anything the endpoint does."""
    checks: list[Check] = []
    state: dict[str, Any] = {}
    url = _root_url(endpoint_url)

    def step(name: str, run: Callable[[], str]) -> bool:
        if checks and not all(c.ok for c in checks):
            checks.append(Check(name, False, "not checked: an earlier check failed", skipped=True))
            return False
        try:
            checks.append(Check(name, True, run()))
            return True
        except _Failed as exc:
            checks.append(Check(name, False, exc.detail, exc.fix))
            return False

    def address() -> str:
        state["pinned"], detail = _check_address(url, policy)
        return detail

    def tls() -> str:
        try:
            state["ctx"] = tls_context(tls_cert_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise _Failed(f"the certificate supplied with the project is not a PEM certificate ({exc})",
                          "Paste the server's certificate or its CA certificate in PEM form (-----BEGIN "
                          "CERTIFICATE-----).") from None
        return _check_tls(state["pinned"], state["ctx"], timeout_s)

    def api_version() -> str:
        state["client"] = _client(state["pinned"], token, state["ctx"], timeout_s)
        state["info_answer"] = _info_answer(state["client"])
        state["api_version"], detail = _check_version(state["info_answer"])
        return detail

    def token_ok() -> str:
        info = state["info"] = _check_token(state["info_answer"])
        return f"token accepted; platform {info.platform} {info.platform_version}"

    try:
        step("address", address)
        step("reachable", lambda: _check_reachable(state["pinned"], timeout_s))
        step("tls", tls)
        step("api_version", api_version)
        step("token", token_ok)
        if smoke:
            step("smoke_job", lambda: _check_smoke(state["client"], state["info"], smoke_timeout_s))
    finally:
        if "client" in state:
            state["client"].close()
    pinned: PinnedEndpoint | None = state.get("pinned")
    info: PlatformInfo | None = state.get("info")
    return QualificationReport(passed=all(c.ok for c in checks), checks=checks,
                               pinned_ip=pinned.ip if pinned else None, api_version=state.get("api_version"),
                               platform=f"{info.platform} {info.platform_version}" if info else None)
