"""`sampan serve`: the HTTP scoring service (horizontal model scored at the bank; API tokens; OpenAPI; config).

The vertical session and mTLS are in test_serve_vertical.py and test_serve_tls.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sampan import load_model  # noqa: E402
from sampan.errors import ConfigError  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402
from sampan.serve.app import create_app  # noqa: E402
from sampan.serve.auth import TokenBook, new_token, token_hash  # noqa: E402
from sampan.serve.config import load_serve_config  # noqa: E402
from sampan.serve.service import horizontal_backend  # noqa: E402

FEATURES = ["income", "sector=food", "sector=retail", "late_payments"]


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    store = Store.open(url)
    params = np.array([-0.8, 0.3, -0.2, 1.1, -1.5])  # weights of the four encoded columns, then the bias
    scaler = {"scaler.mean": np.array([50.0, 0.5, 0.5, 1.0]), "scaler.scale": np.array([20.0, 0.5, 0.5, 1.5])}
    store.register_model("sme-pd", "run-1", {"params": params, **scaler},
                         {"model": {"kind": "logistic", "n_features": 4}, "feature_names": FEATURES})
    store.close()
    return url


@pytest.fixture
def served(tmp_path: Path) -> tuple[TestClient, str, str]:
    url = _store(tmp_path)
    token = new_token()
    backend = horizontal_backend(Store.open(url), "sme-pd", threshold=0.3)
    app = create_app(backend, tokens=TokenBook({"loan-desk": token_hash(token)}))
    return TestClient(app), token, url


ROWS: list[dict[str, Any]] = [
    {"id": "A1", "features": {"income": 30.5, "sector": "food", "late_payments": 4}},
    {"id": "A2", "features": {"income": 90, "sector": "retail", "late_payments": 0, "unused": "x"}},
]


def test_score_over_http_equals_the_in_process_model_and_no_token_is_401(served: tuple[TestClient, str, str]) -> None:
    client, token, url = served
    assert client.post("/v1/score", json={"applicants": ROWS}).status_code == 401
    assert client.post("/v1/score", json={"applicants": ROWS},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    reply = client.post("/v1/score", json={"applicants": ROWS}, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    expected = load_model("sme-pd", store=url).default_probability(
        {"income": [30.5, 90], "sector": ["food", "retail"], "late_payments": [4, 0]})
    got = [r["probability_of_default"] for r in body["results"]]
    assert got == [float(p) for p in expected]  # full precision: the same float64 bits
    assert [r["applicant"] for r in body["results"]] == ["A1", "A2"]
    for r in body["results"]:
        assert r["decision"] == ("decline" if r["probability_of_default"] >= 0.3 else "approve")
        assert r["reasons"] and any(abs(x["logit_contribution"]) > 0 for x in r["reasons"])
    assert body["results"][0]["reasons"][0]["feature"] == "late_payments"  # 4 late payments raise its risk most
    model = client.get("/v1/model", headers={"Authorization": f"Bearer {token}"}).json()
    assert model["threshold"] == 0.3 and model["topology"] == "horizontal"
    assert model["inputs"] == ["income", "sector", "late_payments"]
    assert client.get("/v1/monitoring", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert client.get("/v1/health").json()["status"] == "ok"


def test_monitoring_needs_a_monitor_token_and_shows_bands_only_per_block_of_requests(tmp_path: Path) -> None:
    """A scoring client reading /v1/monitoring before and after someone's request would learn that applicant's
    decision and score band: monitoring takes its own tokens, and its bands refresh once per block."""
    backend = horizontal_backend(Store.open(_store(tmp_path)), "sme-pd", threshold=0.3)
    desk, ops = new_token(), new_token()
    client = TestClient(create_app(backend, tokens=TokenBook({"desk": token_hash(desk)}), monitor_every=3,
                                   monitor_tokens=TokenBook({"ops": token_hash(ops)})))
    scoring, monitor = {"Authorization": f"Bearer {desk}"}, {"Authorization": f"Bearer {ops}"}
    assert client.get("/v1/monitoring", headers=scoring).status_code == 403
    assert client.get("/v1/monitoring").status_code == 401
    assert client.post("/v1/score", json={"applicants": ROWS[:1]}, headers=monitor).status_code == 401  # no scoring
    readings = []
    for _ in range(3):
        assert client.post("/v1/score", json={"applicants": ROWS[:1]}, headers=scoring).status_code == 200
        readings.append(client.get("/v1/monitoring", headers=monitor).json())
    assert [r["published_after"] for r in readings] == [0, 0, 3]
    assert readings[0]["score_bands"] == readings[1]["score_bands"] == {} == readings[0]["decisions"]
    assert sum(readings[2]["score_bands"].values()) == 3 and readings[1]["applicants"] == 2
    assert TestClient(create_app(backend)).get("/v1/monitoring").status_code == 403  # none configured
    assert client.get("/v1/health").json()["status"] == "ok"


def test_bad_requests_are_422_naming_the_field(served: tuple[TestClient, str, str]) -> None:
    client, token, _ = served
    auth = {"Authorization": f"Bearer {token}"}
    empty = client.post("/v1/score", json={"applicants": []}, headers=auth)
    assert empty.status_code == 422 and "applicants" in empty.text
    typo = client.post("/v1/score", json={"applicant": ROWS}, headers=auth)
    assert typo.status_code == 422 and "applicant" in typo.text
    missing = client.post("/v1/score", json={"applicants": [{"id": "A3", "features": {"income": 3}}]}, headers=auth)
    assert missing.status_code == 422 and "'sector'" in missing.json()["detail"]
    unknown = client.post("/v1/score", json={"applicants": [{"features": {"income": 3, "sector": "mining",
                                                                          "late_payments": 1}}]}, headers=auth)
    assert unknown.status_code == 422 and "mining" in unknown.json()["detail"]


def test_openapi_documents_typed_request_and_response(served: tuple[TestClient, str, str]) -> None:
    client, _, _ = served
    schema = client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/health", "/v1/model", "/v1/monitoring"} <= set(schema["paths"])
    assert "/v1/noop" not in schema["paths"]
    parts = schema["components"]["schemas"]
    scored = parts["ScoredApplicant"]["properties"]
    for name in ("probability_of_default", "score", "decision", "reasons"):
        assert scored[name]["description"]
    assert parts["ScoreRequest"]["properties"]["applicants"]["maxItems"] == 1000
    assert schema["paths"]["/v1/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScoreResponse"}
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_access_log_names_no_applicant_data(served: tuple[TestClient, str, str], caplog: Any) -> None:
    client, token, _ = served
    with caplog.at_level("INFO", logger="sampan.serve.access"):
        client.post("/v1/score", json={"applicants": ROWS}, headers={"Authorization": f"Bearer {token}"})
    (line,) = [r.getMessage() for r in caplog.records if r.name == "sampan.serve.access"]
    assert '"client": "loan-desk"' in line and '"applicants": 2' in line and '"status": 200' in line
    for secret in ("A1", "30.5", "food", token):
        assert secret not in line


def test_token_book_and_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = new_token()
    book = TokenBook.parse(f"# clients\ndesk:{token_hash(token)}\n", "tokens.txt")
    assert book.check(token) == "desk" and book.check(token + "x") is None and book.check(None) is None
    with pytest.raises(ConfigError, match="tokens.txt: entry 1 is not 'client:sha256"):
        TokenBook.parse(f"desk:{token}", "tokens.txt")  # a token stored in clear is refused
    (tmp_path / "tokens.txt").write_text(f"desk:{token_hash(token)}\n")
    monkeypatch.setenv("SERVE_TOKENS", f"ops:{token_hash('other')}")
    config = tmp_path / "bank-serve.toml"
    config.write_text('[serve]\nmodel = "sme-pd"\n[serve.auth]\ntokens_file = "tokens.txt"\n'
                      'tokens_env = "SERVE_TOKENS"\n')
    loaded = load_serve_config(config)
    assert set(loaded.tokens().hashes) == {"desk", "ops"}  # type: ignore[union-attr]
    config.write_text('[serve]\nmodel = "sme-pd"\nvertical_run = "r"\n')
    with pytest.raises(ConfigError, match="bank-serve.toml: \\[serve\\] .*exactly one of model"):
        load_serve_config(config)
    config.write_text('[serve]\nmodel = "sme-pd"\nport = "x"\n')
    with pytest.raises(ConfigError, match="port"):
        load_serve_config(config)
    for body, problem in (('model = "sme-pd"\nagent = "party.toml"', "agent .* serves a deployed vertical_run"),
                          ('vertical_run = "r"\nagent = "party.toml"\nworkers = 2', "workers must be 1")):
        config.write_text(f"[serve]\n{body}\n")
        with pytest.raises(ConfigError, match=problem):
            load_serve_config(config)
    config.write_text('[serve]\nmodel = "sme-pd"\nhost = "0.0.0.0"\n[serve.auth]\nallow_unauthenticated = true\n')
    loaded = load_serve_config(config)
    with pytest.raises(ConfigError, match="anyone could score"):
        loaded.check_access(loaded.tokens(), loaded.tls())
    config.write_text('[serve]\nmodel = "sme-pd"\n[serve.tls]\ncert = "no.crt"\nkey = "no.key"\n')
    with pytest.raises(ConfigError, match="\\[serve.tls\\] cert: no file at"):
        load_serve_config(config).tls().check()  # type: ignore[union-attr]


def test_concurrent_requests_batched_on_the_loop_keep_their_rows_and_errors(tmp_path: Path) -> None:
    import asyncio

    import httpx

    url = _store(tmp_path)
    app = create_app(horizontal_backend(Store.open(url), "sme-pd"), mtls=True)
    bad = {"applicants": [{"features": {"income": 1, "sector": "mining", "late_payments": 0}}]}
    bodies = [{"applicants": [ROWS[k % 2]]} for k in range(6)] + [bad]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bank") as client:
            return list(await asyncio.gather(*(client.post("/v1/score", json=b) for b in bodies)))

    replies = asyncio.run(main())
    expected = load_model("sme-pd", store=url).default_probability(
        {"income": [30.5, 90], "sector": ["food", "retail"], "late_payments": [4, 0]})
    for k, reply in enumerate(replies[:6]):
        (result,) = reply.json()["results"]
        assert result["applicant"] == ROWS[k % 2]["id"]
        assert result["probability_of_default"] == pytest.approx(float(expected[k % 2]), rel=1e-12)
    assert replies[6].status_code == 422 and "mining" in replies[6].json()["detail"]


def test_app_from_a_config_file_with_monitoring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampan.serve.service import build_app

    url = _store(tmp_path)
    token = new_token()
    (tmp_path / "tokens.txt").write_text(f"desk:{token_hash(token)}\n")
    config = tmp_path / "bank-serve.toml"
    ops = new_token()
    config.write_text(f'[serve]\nstore = "{url}"\nmodel = "sme-pd@1"\nthreshold = 0.4\nmonitor_every = 10\n'
                      f'[serve.auth]\ntokens_file = "tokens.txt"\nmonitor_tokens_env = "T6_MONITOR_TOKENS"\n')
    monkeypatch.setenv("T6_MONITOR_TOKENS", f"ops:{token_hash(ops)}")
    client = TestClient(build_app(load_serve_config(config)))
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(10):
        assert client.post("/v1/score", json={"applicants": ROWS}, headers=auth).status_code == 200
    assert client.get("/v1/model", headers=auth).json()["threshold"] == 0.4
    monitoring = client.get("/v1/monitoring", headers={"Authorization": f"Bearer {ops}"}).json()
    assert monitoring["applicants"] == 20 and monitoring["latency_ms"]["p99"] >= monitoring["latency_ms"]["p50"] > 0
    assert monitoring["drift"]["model"] == "sme-pd"  # sampan.monitoring's report for the served model


def test_cli_serve_errors_are_one_line_and_its_help_imports_no_web_stack(tmp_path: Path) -> None:
    import subprocess
    import sys

    from typer.testing import CliRunner

    from sampan.cli import app

    config = tmp_path / "bank-serve.toml"
    config.write_text('[serve]\nmodel = "sme-pd"\nhost = "0.0.0.0"\n')  # no tokens, no client CA, not loopback
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 2 and "anyone could score" in result.output and "Traceback" not in result.output
    token = CliRunner().invoke(app, ["serve", "token", "desk"])
    line = token.output.strip().splitlines()[-1].removeprefix("token file line: ")
    assert TokenBook.parse(line, "line").hashes.keys() == {"desk"}
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom sampan.cli import app\n"
            "assert CliRunner().invoke(app, ['serve', '--help']).exit_code == 0\n"
            "print(','.join(m for m in ('fastapi', 'uvicorn', 'numpy', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
