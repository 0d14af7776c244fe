"""The quick profile against Sampan, the reference implementation, served over HTTPS (a server certificate from
the verifier's CA): every quick test passes or is not applicable (Sampan's party kit runs in its process, so the
wire tests are skip, said in their messages)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from sampan.verify.catalogue.http import TargetTLS  # noqa: E402
from sampan.verify.pki import VerifierCA  # noqa: E402
from sampan.verify.runner import Target, run_evaluation  # noqa: E402
from sampan.verify.serve_local import ServerTLS, serve_app  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]
TOKEN = "s" * 32


def test_quick_profile_over_https(tmp_path: Path) -> None:
    from sampan.web.bench_api import SampanBackend

    ca = VerifierCA(tmp_path / "ca")
    server_cert = ca.server_cert("127.0.0.1")
    backend = SampanBackend(tmp_path / "platform")
    tls = ServerTLS(server_cert.cert_file, server_cert.key_file, require_client_cert=False)
    try:
        with serve_app(make_benchmark_app(backend, token=TOKEN), tls=tls) as server:
            ev = run_evaluation(Target(server.url, TOKEN, TargetTLS(ca_file=str(ca.ca_file))), "quick",
                                data_dir=SHARED)
    finally:
        backend.close()
    bad = {o.id: (o.verdict, o.message) for o in ev.outcomes if o.verdict not in ("pass", "skip")}
    assert not bad, bad
    verdicts = {o.id: o.verdict for o in ev.outcomes}
    assert verdicts["F-TLS"] == verdicts["F-AUC-HORIZONTAL"] == verdicts["S-ACCESS"] == "pass"
    assert verdicts["S-SECAGG-MASKED"] == "pass"  # Sampan claims secure aggregation, and its updates are masked
