"""BenchmarkClient against a real local server: typed round trip over mTLS, clear errors, version refusal."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402
from _api_fake_backend import FakeBackend  # noqa: E402

from sampan.verify.api import VERSION_HEADER, Job, PartyRegistration, TableData, TaskSpec  # noqa: E402
from sampan.verify.client import BenchmarkClient, VerifyError  # noqa: E402
from sampan.verify.pki import VerifierCA  # noqa: E402
from sampan.verify.serve_local import LocalServer, ServerTLS, serve_app  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

TOKEN = "client-test-token"
ROWS = TableData(columns=["x", "y"], rows=[[0.1, 1], [0.2, 0], [0.3, 1]])


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> VerifierCA:
    return VerifierCA(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="module")
def mtls_server(ca: VerifierCA) -> Iterator[LocalServer]:
    cert = ca.server_cert()
    tls = ServerTLS(cert.cert_file, cert.key_file, client_ca=ca.ca_file, crl=ca.crl_file)
    with serve_app(make_benchmark_app(FakeBackend(round_seconds=0.02), token=TOKEN), tls=tls) as server:
        yield server


def test_typed_round_trip_over_mtls(ca: VerifierCA, mtls_server: LocalServer) -> None:
    party = ca.client_cert("verifier")
    with BenchmarkClient(mtls_server.url, TOKEN, ca_pem=ca.ca_pem, client_cert=party.files) as client:
        info = client.info()
        assert info.platform == "fake" and client.server_version == "1.0"
        project = client.create_project("eval", ca_pem=ca.ca_pem)
        client.register_party(project.project_id, PartyRegistration(name="bank", role="data_owner",
                                                                    operated_by="platform", data=ROWS))
        mine = client.register_party(project.project_id, PartyRegistration(name="verifier", role="data_owner",
                                                                           operated_by="verifier",
                                                                           certificate_pem=party.cert_pem))
        assert mine.connect is not None and mine.connect.address == "127.0.0.1:9"
        spec = TaskSpec(kind="horizontal", label="y", features={"bank": ["x"], "verifier": ["x"]}, rounds=4)
        job = client.submit_job(project.project_id, spec)
        with pytest.raises(VerifyError) as early:
            client.results(job.job_id)
        assert early.value.code == "conflict" and early.value.status == 409
        assert "/results" in str(early.value)
        seen: list[Job] = []
        done = client.wait_for(job.job_id, 20, progress=seen.append, poll=0.01)
        assert done.state == "succeeded" and seen[-1].state == "succeeded"
        assert [j.round for j in seen] == sorted(j.round for j in seen)
        assert len(client.results(job.job_id).rounds) == 4
        assert client.model(job.job_id).features == ["x"]
        assert client.evaluate(job.job_id, ROWS).rows == 3
        assert client.predict(job.job_id, ROWS).scores == [0.5, 0.5, 0.5]
        with pytest.raises(VerifyError) as missing:
            client.job("nope")
        assert (missing.value.code, missing.value.field) == ("not_found", "job_id")


def test_wait_for_times_out_and_cancel_works(ca: VerifierCA, mtls_server: LocalServer) -> None:
    party = ca.client_cert("verifier2")
    with BenchmarkClient(mtls_server.url, TOKEN, ca_pem=ca.ca_pem, client_cert=party.files) as client:
        project = client.create_project("slow")
        client.register_party(project.project_id, PartyRegistration(name="bank", role="data_owner",
                                                                    operated_by="platform", data=ROWS))
        job = client.submit_job(project.project_id, TaskSpec(kind="horizontal", label="y",
                                                             features={"bank": ["x"]}, rounds=1000))
        with pytest.raises(VerifyError) as slow:
            client.wait_for(job.job_id, 0.1, poll=0.02)
        assert slow.value.code == "timeout"
        assert client.cancel(job.job_id).state == "cancelled"


@pytest.mark.parametrize("variant", ["expired", "wrong_ca", "revoked", None])
def test_the_mtls_server_refuses_bad_client_certs(ca: VerifierCA, mtls_server: LocalServer,
                                                  variant: str | None) -> None:
    files = ca.client_cert(f"bad-{variant}", variant).files if variant else None  # type: ignore[arg-type]
    with BenchmarkClient(mtls_server.url, TOKEN, ca_pem=ca.ca_pem, client_cert=files) as client, \
            pytest.raises(VerifyError) as refused:
        client.info()
    assert refused.value.code in ("tls", "unreachable")


def test_the_client_refuses_a_server_from_another_ca(ca: VerifierCA) -> None:
    cert = ca.server_cert(variant="wrong_ca")
    tls = ServerTLS(cert.cert_file, cert.key_file)
    with serve_app(make_benchmark_app(FakeBackend(), token=TOKEN), tls=tls) as server, \
            BenchmarkClient(server.url, TOKEN, ca_pem=ca.ca_pem) as client:
        with pytest.raises(VerifyError) as refused:
            client.info()
        assert refused.value.code == "tls"
        with BenchmarkClient(server.url, TOKEN, verify=False) as careless:  # only to show the server is up
            assert careless.info().platform == "fake"


def test_wrong_token_is_unauthorized() -> None:
    with serve_app(make_benchmark_app(FakeBackend(), token=TOKEN)) as server, \
            BenchmarkClient(server.url + "/bench/v1/", "wrong") as client:
        with pytest.raises(VerifyError) as denied:
            client.info()
        assert (denied.value.code, denied.value.status) == ("unauthorized", 401)
        assert client.raw("GET", "/info", auth=False).status_code == 401
        assert client.raw("GET", "/info", token=TOKEN).status_code == 200


def _mock(version: str | None, body: object, status: int = 200) -> httpx.MockTransport:
    def handle(_: httpx.Request) -> httpx.Response:
        headers = {VERSION_HEADER: version} if version is not None else {}
        return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)
    return httpx.MockTransport(handle)


INFO = {"api_version": "1.0", "platform": "p", "platform_version": "1"}


def test_a_different_major_version_is_refused() -> None:
    with BenchmarkClient("http://platform", TOKEN, transport=_mock("2.0", {**INFO, "api_version": "2.0"})) as c, \
            pytest.raises(VerifyError) as refused:
        c.info()
    assert refused.value.code == "version" and "2.0" in str(refused.value)
    with BenchmarkClient("http://platform", TOKEN, transport=_mock("1.3", INFO)) as c:
        assert c.info().platform == "p"  # a newer minor is fine
    with BenchmarkClient("http://platform", TOKEN, transport=_mock("1.0", {**INFO, "api_version": "3.1"})) as c, \
            pytest.raises(VerifyError, match="api_version"):
        c.info()
    with BenchmarkClient("http://platform", TOKEN, transport=_mock(None, INFO)) as c, \
            pytest.raises(VerifyError, match="header"):
        c.info()


def test_off_contract_answers_are_bad_responses() -> None:
    with BenchmarkClient("http://platform", TOKEN, transport=_mock("1.0", {"platform": "p"})) as c, \
            pytest.raises(VerifyError) as bad:
        c.info()
    assert bad.value.code == "bad_response" and bad.value.field == "platform_version"
    with BenchmarkClient("http://platform", TOKEN, transport=_mock("1.0", {"oops": 1}, 500)) as c, \
            pytest.raises(VerifyError) as bad:
        c.info()
    assert bad.value.code == "bad_response" and bad.value.status == 500
    with BenchmarkClient("http://platform", TOKEN, transport=_mock("1.0", {"scores": [0.1]})) as c, \
            pytest.raises(VerifyError, match="1 scores for 3 rows"):
        c.predict("j1", ROWS)


def test_unreachable_platform() -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with BenchmarkClient(f"http://127.0.0.1:{port}", TOKEN, timeout=2) as c, pytest.raises(VerifyError) as down:
        c.info()
    assert down.value.code == "unreachable" and "GET /info" in str(down.value)
