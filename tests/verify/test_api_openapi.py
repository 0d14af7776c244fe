"""docs/verification/openapi.json is exactly what the server generates (regenerate: tools/gen_bench_openapi.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
ROOT = Path(__file__).resolve().parents[2]


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_bench_openapi", ROOT / "tools" / "gen_bench_openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_openapi_matches_the_server() -> None:
    generated = _generator().render()  # type: ignore[attr-defined]
    committed = (ROOT / "docs" / "verification" / "openapi.json").read_text(encoding="utf-8")
    assert committed == generated, "docs/verification/openapi.json is stale: run python tools/gen_bench_openapi.py"


def test_the_document_covers_the_contract() -> None:
    document = json.loads((ROOT / "docs" / "verification" / "openapi.json").read_text(encoding="utf-8"))
    assert document["info"]["version"] == "1.0"
    operations = {m["operationId"] for p in document["paths"].values() for m in p.values()}
    assert operations == {"info", "create_project", "register_party", "submit_job", "job", "cancel", "results",
                          "model", "evaluate", "predict"}
    assert document["security"] == [{"bearer": []}]
