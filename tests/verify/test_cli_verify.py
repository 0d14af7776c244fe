"""`sampan verify`: run/local write every output at once (a stub runner here, the real one in the runner's tests),
progress shows verdicts, clear one-line errors, nothing half-written on failure; report and compare re-render."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from _report_fixtures import synthetic
from typer.testing import CliRunner

import sampan.cli.verify as cli_verify
from sampan.cli import app
from sampan.verify.results import load_evaluation, save_evaluation

ALL = {"results.json", "manifest.json", "report.html", "report.pdf", "junit.xml"}


class _Event:
    def __init__(self, phase: str, test_id: str, index: int, total: int, verdict: str | None = None) -> None:
        self.phase, self.test_id, self.index, self.total, self.verdict = phase, test_id, index, total, verdict
        self.seconds, self.message = (0.5 if verdict else None), ("because" if verdict else "")


def _stub(calls: list[dict[str, Any]], *, fail: bool = False):
    def run_evaluation(url: str, token: str, tls: dict[str, str] | None, profile: str, *, seed, only, progress,
                       local=None, dataset="german"):
        calls.append({"url": url, "token": token, "tls": tls, "profile": profile, "seed": seed,
                      "only": only, "local": local})
        ev = synthetic()
        for i, o in enumerate(ev.outcomes, 1):
            progress(_Event("start", o.id, i, len(ev.outcomes)))
            if fail and i == 3:
                raise KeyboardInterrupt
            progress(_Event("end", o.id, i, len(ev.outcomes), o.verdict))
        return ev
    return run_evaluation


def test_run_writes_all_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("reportlab")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_verify, "_run_evaluation", _stub(calls))
    monkeypatch.setenv("BENCH_TOKEN", "s3cret")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["verify", "run", "--target", "http://127.0.0.1:9/bench/v1", "--token-env",
                                      "BENCH_TOKEN", "--profile", "quick", "--out", str(out), "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == ALL
    assert calls == [{"url": "http://127.0.0.1:9", "token": "s3cret", "tls": None, "profile": "quick",
                      "seed": 7, "only": None, "local": None}]
    assert "FAIL S-SECAGG-MASKED" in result.output and "PASS F-API-VERSION" in result.output
    assert "6 tests" in result.output and "s3cret" not in result.output
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    assert ET.parse(out / "junit.xml").getroot().get("failures") == "1"
    assert load_evaluation(out / "results.json").counts()["error"] == 1


def test_run_strict_exit_code_and_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_TOKEN", "t")
    monkeypatch.setattr(cli_verify, "_run_evaluation", _stub([]))
    out = tmp_path / "strict"
    args = ["verify", "run", "--target", "http://127.0.0.1:9", "--token-env", "BENCH_TOKEN", "--no-pdf",
            "--quiet", "--strict", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 5
    assert (out / "results.json").exists()
    monkeypatch.setattr(cli_verify, "_run_evaluation", _stub([], fail=True))
    out2 = tmp_path / "interrupted"
    result = CliRunner().invoke(app, [*args[:-1], str(out2)])
    assert result.exit_code == 130
    assert not out2.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(("args", "needle"), [
    (["--target", "ftp://x", "--token-env", "BENCH_TOKEN"], "expected an http:// or https:// URL"),
    (["--target", "http://x", "--token-env", "NOT_SET_ANYWHERE_42"], "NOT_SET_ANYWHERE_42"),
    (["--target", "http://x", "--token-env", "BENCH_TOKEN", "--profile", "huge"], "--profile 'huge'"),
    (["--target", "http://x", "--token-env", "BENCH_TOKEN", "--ca", "/nonexistent/ca.pem"], "--ca /nonexistent"),
    (["--target", "http://x", "--token-env", "BENCH_TOKEN", "--client-cert", __file__], "--client-key go together"),
])
def test_run_bad_input_is_one_line(args: list[str], needle: str, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_TOKEN", "t")
    monkeypatch.setattr(cli_verify, "_run_evaluation", _stub([]))
    result = CliRunner().invoke(app, ["verify", "run", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_report_and_compare(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_evaluation(synthetic("weak"), a)
    save_evaluation(synthetic("sampan", verdicts={"S-SECAGG-MASKED": "pass"}), b)
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "report", str(a), "--out", str(tmp_path / "r"), "--no-pdf"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "r").iterdir()} == ALL - {"report.pdf"}
    result = runner.invoke(app, ["verify", "compare", str(a), str(b), "--out", str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    assert "1 verdict(s) changed" in result.output and (tmp_path / "c.html").exists()
    table = runner.invoke(app, ["verify", "table", str(a), str(b)])
    assert table.exit_code == 0, table.output
    assert "| Id | Test | weak 0.1 | sampan 0.1 |" in table.output
    assert "| S-SECAGG-MASKED | Updates masked under secure aggregation | **FAIL** | pass |" in table.output
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "nope"}))
    bad = runner.invoke(app, ["verify", "compare", str(a), str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "schema" in bad.output and "Traceback" not in bad.output


def test_run_unreachable_target_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("httpx")
    pytest.importorskip("sampan.verify.runner")
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BENCH_TOKEN", "t")
    result = CliRunner().invoke(app, ["verify", "run", "--target", f"http://127.0.0.1:{port}", "--token-env",
                                      "BENCH_TOKEN", "--quiet", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "cannot reach the Benchmark API" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_local_unknown_platform(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify", "local", "--platform", "nope", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--platform 'nope'" in result.output


def test_local_weak_starts_a_real_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import ssl

    import httpx

    seen: dict[str, Any] = {}

    def run_evaluation(url, token, tls, profile, *, seed, only, progress, local=None, dataset="german"):
        verify = ssl.create_default_context(cafile=tls["ca_file"]) if tls else True
        info = httpx.get(url + "/bench/v1/info", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                         verify=verify).json()
        seen.update(info=info, local=local, url=url)
        return synthetic(info["platform"])

    monkeypatch.setattr(cli_verify, "_run_evaluation", run_evaluation)
    result = CliRunner().invoke(app, ["verify", "local", "--platform", "weak", "--no-pdf", "--quiet", "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert seen["info"]["platform"] == "weak" and seen["local"]["local_pids"]
    assert seen["url"].startswith("http://")
    result = CliRunner().invoke(app, ["verify", "local", "--platform", "weak", "--tls", "--no-pdf", "--quiet",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert seen["url"].startswith("https://") and seen["info"]["platform"] == "weak"
    assert load_evaluation(tmp_path / "o" / "results.json").target.platform == "weak"


@pytest.mark.shared_data
def test_local_weak_with_the_real_runner(tmp_path: Path) -> None:
    """End to end: the weak platform on 127.0.0.1, V6's runner, every file written, verdicts as the catalogue says."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("sampan.verify.runner")
    from sampan.data import public

    if public.shared_data_dir() is None:
        pytest.skip("../shared/data is not on this machine")
    out = tmp_path / "weak"
    result = CliRunner().invoke(app, ["verify", "local", "--platform", "weak", "--profile", "quick", "--seed", "5",
                                      "--only", "F-API-VERSION", "--only", "S-ACCESS", "--only", "F-TLS",
                                      "--no-pdf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == ALL - {"report.pdf"}
    ev = load_evaluation(out / "results.json")
    verdicts = {o.id: o.verdict for o in ev.outcomes}
    assert verdicts == {"F-API-VERSION": "pass", "S-ACCESS": "pass", "F-TLS": "fail"}  # weak serves plain HTTP
    assert ev.target.platform == "weak" and ev.manifest
    assert json.loads((out / "manifest.json").read_text()) == ev.manifest
    assert "FAIL F-TLS" in result.output

    again = tmp_path / "again"  # reproduce from the manifest: same seed, profile and tests
    result = CliRunner().invoke(app, ["verify", "local", "--platform", "weak", "--manifest", str(out / "manifest.json"),
                                      "--no-pdf", "--quiet", "--out", str(again)])
    assert result.exit_code == 0, result.output
    redo = load_evaluation(again / "results.json")
    assert [o.id for o in redo.outcomes] == [o.id for o in ev.outcomes]
    assert redo.manifest["seed"] == 5 and redo.manifest["draws"] == ev.manifest["draws"]
    both = CliRunner().invoke(app, ["verify", "local", "--platform", "weak", "--manifest", str(out / "manifest.json"),
                                    "--seed", "6", "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "--manifest fixes" in both.output
