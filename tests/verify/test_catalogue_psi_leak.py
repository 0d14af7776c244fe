"""S-PSI-LEAK (R16-VERDICT-11): the `psi` claim's security test, against leaky platforms and an honest one.

The verifier's party (the vertical feature holder) checks what it received for the other side's ids outside the
intersection, and what it sent for its own, in the clear or as an unsalted hash. Controls: the weak platform made
to claim PSI (its party sends every id in the clear), and one that also hands the party the label holder's ids as
SHA-256 hex (received direction). Honest: Sampan in-process passes, said to be self-reported. A platform without psi
is not applicable.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from sampan.verify.api import Claims, Job, PlatformInfo, TaskSpec  # noqa: E402
from sampan.verify.catalogue.security_psi import IdForms  # noqa: E402
from sampan.verify.platforms.weak import WeakBackend  # noqa: E402
from sampan.verify.runner import Target, run_evaluation  # noqa: E402
from sampan.verify.serve_local import serve_app  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOKEN = "tok-psi-leak"
needs_data = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


def test_id_forms_find_clear_and_hashed_ids_only() -> None:
    forms = IdForms(["17", "204"])
    digest = hashlib.sha256(b"17").digest()
    assert forms.found_in({"ids": np.array(["3", "17 ", "5"])}) == {"17"}
    assert forms.found_in({"h": np.array([hashlib.md5(b"204").hexdigest()])}) == {"204"}
    assert forms.found_in({"raw": np.frombuffer(b"xx" + digest + b"yy", dtype=np.uint8)}) == {"17"}
    assert forms.found_in({"b": np.array([b"pad" + hashlib.blake2b(b"204").digest()[:8]])}) == {"204"}
    # row indices and random bytes are not ids
    assert forms.found_in({"train": np.arange(1000), "noise": np.random.default_rng(0).bytes(1 << 16)}) == set()
    assert forms.found_in({"salted": np.array([hashlib.sha256(b"salt17").hexdigest()])}) == set()


class PsiClaimingWeak(WeakBackend):
    """The weak platform claiming PSI: its 'PSI' is a clear join at the aggregator (every id sent in the clear)."""

    def info(self) -> PlatformInfo:
        info = super().info()
        claims = info.claims.model_copy(update={"psi": True}) if info.claims else Claims(psi=True)
        return info.model_copy(update={"capabilities": [*info.capabilities, "psi"], "claims": claims})


class HashedPeerIds(PsiClaimingWeak):
    """... and hands the verifier's party the label holder's ids as unsalted SHA-256 hex with the join."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        holder = next(p for p in self._job(job.job_id).parties.values() if p.role == "label_holder")
        assert holder.data is not None
        k = holder.data.columns.index("id")
        peer = [hashlib.sha256(str(row[k]).encode()).hexdigest() for row in holder.data.rows]
        room = self.aggregator().rooms[job.job_id]
        publish = room.publish

        def leaky(**changes: Any) -> None:
            if isinstance(changes.get("plan"), dict):
                changes["plan"] = {**changes["plan"], "peer": peer}
            publish(**changes)

        room.publish = leaky
        return job


def _outcome(backend: WeakBackend) -> Any:
    with backend, serve_app(make_benchmark_app(backend, token=TOKEN)) as server:
        ev = run_evaluation(Target(server.url, TOKEN), "standard", only=["S-PSI-LEAK"], data_dir=SHARED)
    return ev.outcomes[0]


@needs_data
def test_a_platform_without_psi_is_not_applicable() -> None:
    outcome = _outcome(WeakBackend())
    assert outcome.verdict == "skip" and "psi" in outcome.message, outcome.message


@needs_data
def test_ids_sent_in_the_clear_fail() -> None:
    outcome = _outcome(PsiClaimingWeak())
    assert outcome.verdict == "fail", outcome.message
    assert outcome.evidence["sent_own_ids"] == outcome.evidence["own_private_ids"] > 0
    assert outcome.evidence["sent_in_kinds"] == ["ids"]
    assert outcome.evidence["received_other_side_ids"] == 0  # the clear join itself names only common ids


@needs_data
def test_the_other_sides_ids_as_unsalted_hashes_fail() -> None:
    outcome = _outcome(HashedPeerIds())
    assert outcome.verdict == "fail", outcome.message
    assert outcome.evidence["received_other_side_ids"] == outcome.evidence["other_side_private_ids"] > 0
    assert outcome.evidence["received_in_kinds"] == ["plan"]


@needs_data
@pytest.mark.slow
def test_sampan_in_process_passes_and_says_self_reported(tmp_path: Path) -> None:
    from sampan.web.bench_api import SampanBackend

    backend = SampanBackend(tmp_path / "platform")
    try:
        with serve_app(make_benchmark_app(backend, token=TOKEN)) as server:
            ev = run_evaluation(Target(server.url, TOKEN), "standard", only=["S-PSI-LEAK"], data_dir=SHARED)
    finally:
        backend.close()
    outcome = ev.outcomes[0]
    assert outcome.verdict == "pass", outcome.message
    assert "self-reported" in outcome.message and outcome.evidence["party_in_process"] is True
    evidence = outcome.evidence
    assert evidence["messages_received"] > 0 and evidence["intersection_reported"] == evidence["intersection_verifier"]
