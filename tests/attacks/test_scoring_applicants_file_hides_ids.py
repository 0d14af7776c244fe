"""Scoring from the bank's applicants file: a curious coordinator, which relays every message of the request,
finds no applicant id in anything it handles (meta or arrays); the partners still answer (ids travel sealed
bank -> partner), and the bank's results equal those of the same ids given in clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_serve_session_coordinator_view import CuriousCoordinator  # the coordinator's transcript (T6's attack)

from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.applicants import ApplicantsPolicy
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.session import VerticalSession
from sampan.wire import Message


def _blob(msg: Message) -> bytes:
    return repr(msg.meta).encode() + b"".join(np.ascontiguousarray(a).tobytes() for a in msg.arrays.values())


def test_the_coordinator_never_holds_the_ids_of_a_file_request(tmp_path: Path) -> None:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    inner, parties = build_inprocess_vertical(tables)
    rng = np.random.default_rng(1)
    for name, p in parties.items():
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        rng.normal(size=d))
    transport = CuriousCoordinator(inner)
    session = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="file-ids")  # type: ignore[arg-type]
    session.connect()
    ids = [str(i) for i in tables["bank"].ids[:12]]
    path = tmp_path / "applicants.csv"
    path.write_text("reg_no,requested_amount\n" + "".join(f"{i},100000\n" for i in ids))
    parties["bank"].scoring.applicants = ApplicantsPolicy(folder=str(tmp_path))  # the bank's applicants folder
    transport.seen.clear()
    from_file = session._score({}, {"applicants_file": str(path), "id_column": "reg_no"})[1]
    seen = b"".join(_blob(m) for m in transport.seen)
    assert not [i for i in ids if i.encode() in seen], "an applicant id crossed the coordinator"
    in_clear = session.score(ids)
    bank = parties["bank"].scoring.results
    assert [r.applicant for r in bank[from_file]] == ids
    assert [r.probability_of_default for r in bank[from_file]] == [r.probability_of_default for r in bank[in_clear]]
    assert any(not r.missing_at for r in bank[from_file])  # the partner knew some and answered for them


def test_a_deployed_bank_reads_only_the_file_of_the_job_it_accepted() -> None:
    """A coordinator that names another file (or column) in score.start is refused before the bank reads it."""
    import pytest

    from sampan.deploy.allow import JobRefused, check_request, job_description

    config = {"scoring": {"model": "run-1", "applicants_file": "/bank/applicants.csv", "id_column": "reg_no"}}
    job = job_description(config, workflow="scoring", operator="ops", parties=["bank", "payments"],
                          label_holder="bank")
    base = {"request_id": "r/1", "partners": ["payments"], "bank": "bank"}
    check_request(None, "bank", "score.start", {**base, "applicants_file": "/bank/applicants.csv",
                                                "id_column": "reg_no"}, job)
    for kind in ("score.start", "vgb.score_start"):
        for meta in ({"applicants_file": "/etc/passwd", "id_column": "reg_no"},
                     {"applicants_file": "/bank/applicants.csv", "id_column": "secret_column"}):
            with pytest.raises(JobRefused, match="applicants file"):
                check_request(None, "bank", kind, {**base, **meta}, job)


def test_a_gbdt_request_from_the_banks_file_hides_the_ids_too(tmp_path: Path) -> None:
    from test_vertical_lr import _session, _vertical_tables

    from sampan.models.gbdt import GBDTParams
    from sampan.vertical.gbdt import score_vertical_gbdt, train_vertical_gbdt
    from sampan.vertical.session import Splits

    session, parties, inner = _session(_vertical_tables(False))
    splits = Splits.random(session.n_aligned, seed=1)
    train_vertical_gbdt(inner, session.run_id, "bank", ["payments"], splits.train, splits.val,
                        GBDTParams(n_trees=3, max_depth=2, n_bins=8, early_stopping_rounds=50))
    ids = [str(i) for i in parties["bank"].data.ids[:9]]
    path = tmp_path / "applicants.csv"
    path.write_text("reg_no\n" + "\n".join(ids) + "\n")
    parties["bank"].gbdt.applicants = ApplicantsPolicy(folder=str(tmp_path))  # the bank's applicants folder
    transport = CuriousCoordinator(inner)
    score_vertical_gbdt(transport, session.relay, "bank", ["payments"], "from-file",  # type: ignore[arg-type]
                        applicants_file={"applicants_file": str(path), "id_column": "reg_no"})
    seen = b"".join(_blob(m) for m in transport.seen)
    assert not [i for i in ids if i.encode() in seen], "an applicant id crossed the coordinator"
    score_vertical_gbdt(inner, session.relay, "bank", ["payments"], "in-clear", applicants=ids)
    results = parties["bank"].gbdt.results
    assert [r["applicant"] for r in results["from-file"]] == ids
    assert [r["logit"] for r in results["from-file"]] == [r["logit"] for r in results["in-clear"]]
