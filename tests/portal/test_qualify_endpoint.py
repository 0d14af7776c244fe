"""The qualification check names the check that failed, and says how to fix it, for each kind of bad endpoint.

Real servers on 127.0.0.1 (allow-listed, as the embedded mode does): the weak platform over http and over TLS with
good, expired, self-signed and wrong-name certificates, a wrong port, a wrong token, another API version, a
platform whose jobs fail, endless and slow answers.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from _egress_servers import endless, hostile_server, trickle, version_server

from sampan.verify.api import Job, TaskSpec
from sampan.verify.egress import EgressPolicy
from sampan.verify.pki import IssuedCert, VerifierCA
from sampan.verify.platforms.weak import WeakBackend
from sampan.verify.qualify import CHECKS, QualificationReport, qualify
from sampan.verify.serve_local import LocalServer, ServerTLS, serve_app
from sampan.verify.server import make_benchmark_app

LOOPBACK = EgressPolicy(["127.0.0.1/32"])


@contextlib.contextmanager
def weak_platform(cert: IssuedCert | None = None, backend: Any = None) -> Iterator[tuple[LocalServer, str]]:
    token = secrets.token_urlsafe(16)
    tls = ServerTLS(cert.cert_file, cert.key_file) if cert is not None else None
    with serve_app(make_benchmark_app(backend or WeakBackend(), token=token), tls=tls) as server:
        yield server, token


@pytest.fixture(scope="module")
def ca() -> Iterator[VerifierCA]:
    with VerifierCA(name="applicant test CA") as authority:
        yield authority


def failed(report: QualificationReport) -> tuple[str, str, str]:
    assert not report.passed
    check = report.failed
    assert check is not None
    assert check.fix, f"the failed check {check.name} says no fix"
    later = report.checks[report.checks.index(check) + 1:]
    assert all(c.skipped and c.status == "skipped" for c in later)
    return check.name, check.detail, check.fix


def test_a_good_local_endpoint_passes_every_check() -> None:
    with weak_platform() as (server, token):
        report = qualify(server.url + "/bench/v1/", token, None, LOOPBACK)
    assert report.passed, report.to_dict()
    assert [c.name for c in report.checks] == list(CHECKS)
    assert report.pinned_ip == "127.0.0.1" and report.api_version == "1.0"
    assert "weak" in (report.platform or "")
    assert token not in str(report.to_dict())


def test_a_loopback_endpoint_not_allow_listed_fails_the_address_check() -> None:
    with weak_platform() as (server, token):
        name, detail, fix = failed(qualify(server.url, token, None, EgressPolicy()))
    assert name == "address" and "loopback" in detail and "allow-list" in fix


def test_wrong_port_fails_reachability() -> None:
    with weak_platform() as (server, token):
        port = server.port
    name, detail, fix = failed(qualify(f"http://127.0.0.1:{port}", token, None, LOOPBACK))
    assert name == "reachable" and str(port) in detail and "port" in fix


def test_wrong_token_fails_the_token_check() -> None:
    with weak_platform() as (server, token):
        name, detail, fix = failed(qualify(server.url, "not-" + token, None, LOOPBACK))
    assert name == "token" and "401" in detail and "token" in fix


def test_another_api_version_fails_the_version_check() -> None:
    with hostile_server(version_server("2.0")) as (port, _):
        name, detail, fix = failed(qualify(f"http://127.0.0.1:{port}", "tok", None, LOOPBACK))
    assert name == "api_version" and "2.0" in detail and "1.x" in fix


def test_a_server_that_is_not_the_benchmark_api_fails_the_version_check() -> None:
    def plain(h: Any) -> None:
        h.send_response(404)
        h.send_header("Content-Length", "0")
        h.end_headers()

    with hostile_server(plain) as (port, _):
        name, detail, _fix = failed(qualify(f"http://127.0.0.1:{port}/", "tok", None, LOOPBACK))
    assert name == "api_version" and "X-Bench-API-Version" in detail and "root" in detail


def test_an_endless_info_answer_is_cut_and_fails() -> None:
    with hostile_server(endless) as (port, _):
        name, detail, _fix = failed(qualify(f"http://127.0.0.1:{port}", "tok", None, LOOPBACK, timeout_s=20))
    assert name == "api_version" and "bytes" in detail


def test_a_slow_info_answer_fails_within_the_bound() -> None:
    with hostile_server(trickle) as (port, _):
        name, detail, _fix = failed(qualify(f"http://127.0.0.1:{port}", "tok", None, LOOPBACK, timeout_s=1))
    assert name == "api_version" and "still coming" in detail


def test_tls_with_the_supplied_ca_passes(ca: VerifierCA) -> None:
    with weak_platform(ca.server_cert("127.0.0.1")) as (server, token):
        report = qualify(server.url, token, ca.ca_pem, LOOPBACK)
    assert report.passed, report.to_dict()
    assert "TLSv1" in report.checks[2].detail


def test_tls_by_host_name_is_pinned_and_checked_against_the_name(ca: VerifierCA) -> None:
    cert = ca.issue("bench.test", usage="server", hosts=("bench.test",))
    policy = EgressPolicy(["127.0.0.1/32"], resolver=lambda host, port: ["127.0.0.1"])
    with weak_platform(cert) as (server, token):
        report = qualify(f"https://bench.test:{server.port}", token, ca.ca_pem, policy)
    assert report.passed, report.to_dict()


def test_an_applicants_own_self_signed_certificate_can_be_supplied(ca: VerifierCA) -> None:
    cert = ca.server_cert("127.0.0.1", variant="self_signed")
    with weak_platform(cert) as (server, token):
        report = qualify(server.url, token, cert.cert_pem, LOOPBACK)
    assert report.passed, report.to_dict()


def test_an_expired_certificate_fails_tls(ca: VerifierCA) -> None:
    with weak_platform(ca.server_cert("127.0.0.1", variant="expired")) as (server, token):
        name, detail, fix = failed(qualify(server.url, token, ca.ca_pem, LOOPBACK))
    assert name == "tls" and "expired" in detail and "renew" in fix


def test_a_self_signed_certificate_not_supplied_fails_tls(ca: VerifierCA) -> None:
    with weak_platform(ca.server_cert("127.0.0.1", variant="self_signed")) as (server, token):
        name, detail, fix = failed(qualify(server.url, token, ca.ca_pem, LOOPBACK))
    assert name == "tls" and "self-signed" in detail.lower() and "upload" in fix


def test_a_certificate_from_another_ca_fails_tls(ca: VerifierCA) -> None:
    with weak_platform(ca.server_cert("127.0.0.1", variant="wrong_ca")) as (server, token):
        name, detail, fix = failed(qualify(server.url, token, ca.ca_pem, LOOPBACK))
    assert name == "tls" and "refused" in detail and "chain" in fix


def test_a_certificate_for_another_host_fails_tls(ca: VerifierCA) -> None:
    cert = ca.issue("other.example", usage="server", hosts=("other.example",))
    by_name = EgressPolicy(["127.0.0.1/32"], resolver=lambda host, port: ["127.0.0.1"])
    with weak_platform(cert) as (server, token):
        name, detail, fix = failed(qualify(server.url, token, ca.ca_pem, LOOPBACK))
        assert name == "tls" and "mismatch" in detail.lower() and "IP address" in fix
        name, detail, fix = failed(qualify(f"https://bench.test:{server.port}", token, ca.ca_pem, by_name))
        assert name == "tls" and "mismatch" in detail.lower() and "host name" in fix


def test_plain_http_to_a_tls_port_and_a_bad_pem_fail_tls(ca: VerifierCA) -> None:
    with weak_platform(ca.server_cert("127.0.0.1")) as (server, token):
        name, _detail, _fix = failed(qualify(server.url, token, "not a certificate", LOOPBACK))
        assert name == "tls"
        name, _detail, _fix = failed(qualify(server.url.replace("https://", "http://"), token, None, LOOPBACK))
        assert name == "api_version"  # an http request to a TLS port gets no Benchmark API answer


class _FailingJobs(WeakBackend):
    """A platform that takes jobs and fails every one of them."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        from sampan.verify.backend import BackendError

        raise BackendError("internal", "the training cluster is down")


def test_a_platform_whose_smoke_job_fails_fails_the_smoke_check() -> None:
    with weak_platform(backend=_FailingJobs()) as (server, token):
        name, detail, fix = failed(qualify(server.url, token, None, LOOPBACK))
    assert name == "smoke_job" and "training cluster is down" in detail and fix
