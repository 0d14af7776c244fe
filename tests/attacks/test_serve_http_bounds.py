"""Attacks on `sampan serve`'s HTTP side: scoring clients with valid tokens, and the config/CLI checks (issue 13
review findings, now fixed).

R13-SRV-5: a finite but extreme feature value (1e308) made an infinite reason contribution, a 500; the request schema
now bounds numbers (finite, |x| <= 1e15) and answers 422 naming the feature.
R13-SRV-6: any client with a token read /v1/monitoring; reading it before and after another client's request gave
that client's applicant's score band and decision. Now monitoring takes its own monitor tokens (a scoring token gets
403) and its decisions and bands refresh once per ``monitor_every`` requests.
R13-SRV-7: no bound on the request body; now [serve] max_body_bytes (1 MiB) answers 413 before parsing, and the
schema bounds feature counts, names and labels.
R13-SRV-8: API tokens (and applicant data) over plain HTTP on a non-loopback host passed the config check; now a
ConfigError unless [serve.tls] is configured or the host is loopback.
R13-SRV-9: `sampan serve --port 70000` was not validated; overrides are now validated like the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sampan.errors import ConfigError  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402
from sampan.serve.app import create_app  # noqa: E402
from sampan.serve.auth import TokenBook, new_token, token_hash  # noqa: E402
from sampan.serve.config import load_serve_config  # noqa: E402
from sampan.serve.service import horizontal_backend  # noqa: E402


def _service(tmp_path: Path) -> tuple[TestClient, dict[str, str], dict[str, str]]:
    store = Store.open(f"sqlite:///{tmp_path / 'bank.db'}")
    store.register_model("pd", "run-1", {"params": np.array([2.0, -3.0, 0.1])},
                         {"model": {"kind": "logistic", "n_features": 2}, "feature_names": ["x", "y"]})
    a, b = new_token(), new_token()
    app = create_app(horizontal_backend(store, "pd", threshold=0.5),
                     tokens=TokenBook({"desk-a": token_hash(a), "broker-b": token_hash(b)}))
    return (TestClient(app, raise_server_exceptions=False), {"Authorization": f"Bearer {a}"},
            {"Authorization": f"Bearer {b}"})


def test_extreme_finite_feature_is_a_clear_422(tmp_path: Path) -> None:
    client, a, _ = _service(tmp_path)
    reply = client.post("/v1/score", json={"applicants": [{"features": {"x": 1e308, "y": 0}}]}, headers=a)
    assert reply.status_code == 422 and "'x'" in reply.text, (reply.status_code, reply.text)


def test_an_oversized_body_is_refused(tmp_path: Path) -> None:
    client, a, _ = _service(tmp_path)
    body = {"applicants": [{"features": {"x": 1, "y": 2, "note": "v" * (8 << 20)}}] * 3}  # 3 x 8 MiB
    status = client.post("/v1/score", json=body, headers=a).status_code
    assert status in (413, 422), status


def test_tokens_without_tls_on_a_public_host_are_refused(tmp_path: Path) -> None:
    (tmp_path / "tokens.txt").write_text(f"desk:{token_hash(new_token())}\n")
    config = tmp_path / "bank-serve.toml"
    config.write_text('[serve]\nmodel = "pd"\nhost = "0.0.0.0"\n[serve.auth]\ntokens_file = "tokens.txt"\n')
    loaded = load_serve_config(config)
    with pytest.raises(ConfigError):
        loaded.check_access(loaded.tokens(), loaded.tls())


def test_cli_port_override_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import sampan.serve.service as service
    from sampan.cli import app

    started: list[Any] = []
    monkeypatch.setattr(service, "serve", lambda config: started.append(config.section.port))  # never listens
    config = tmp_path / "bank-serve.toml"
    config.write_text('[serve]\nmodel = "pd"\n[serve.auth]\nallow_unauthenticated = true\n')
    result = CliRunner().invoke(app, ["serve", "--config", str(config), "--port", "70000"])
    assert result.exit_code != 0 and not started, (result.exit_code, started)


def test_a_client_cannot_read_another_clients_outcome_from_monitoring(tmp_path: Path) -> None:
    client, a, b = _service(tmp_path)

    def view() -> dict[str, Any]:
        reply = client.get("/v1/monitoring", headers=a)
        return reply.json() if reply.status_code == 200 else {}

    before = view()
    scored = client.post("/v1/score", json={"applicants": [{"features": {"x": 0.3, "y": 0.1}}]}, headers=b).json()
    (result,) = scored["results"]
    after = view()
    band = int(result["score"] // 20 * 20)
    learned = {k: v - before.get("score_bands", {}).get(k, 0) for k, v in after.get("score_bands", {}).items()}
    decisions = {k: v - before.get("decisions", {}).get(k, 0) for k, v in after.get("decisions", {}).items()}
    assert {k: v for k, v in learned.items() if v} != {f"{band}-{band + 20}": 1}, "B's score band, read by A"
    assert {k: v for k, v in decisions.items() if v} != {result["decision"]: 1}, "B's decision, read by A"
