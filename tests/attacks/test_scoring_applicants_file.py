"""R13-SCO-1..3, 10, 13..15 (review, issue 13): a malicious coordinator's scoring job names any file and column on
the bank.

`[scoring] applicants_file` / `id_column` come from the job description, which the coordinator writes; the bank's
per-request check (`allow_requests._check_vertical_job`) only compares the request with that same job, and the
bank's `[allow]` list has no rule about which files a job may name (`deploy.allow.check_job`). The bank's
`read_applicant_ids` then opens whatever path it is given (absolute, `..`, symlink, its own training file, key
files, /dev/zero) and:
* R13-SCO-1: the job is accepted whatever path it names (no allow-list rule; claim "the bank reads no other file
  than the job's" holds only because the coordinator writes the job);
* R13-SCO-2: the refusal for an unknown column quotes the file's first line back to the coordinator (`it has
  '...'`), so the coordinator reads the first line of any file the bank agent can read;
* R13-SCO-3: naming another column (e.g. the label column of the bank's training file) makes the bank seal that
  column's values, row by row, to every partner as "applicant ids";
* R13-SCO-10: naming /dev/zero (or any endless stream) makes `read_applicant_ids` (`list(csv.reader(...))`) read
  without end, memory growing ~200 MB/s, until the bank agent dies;
* R13-SCO-13: the file check runs only for `workflow == "scoring"`; a vertical TRAINING job (whose description names
  no file at all) still answers `score.start` / `vgb.score_start` (`VERTICAL_KINDS`), and the bank's handlers read
  any `applicants_file` its meta names, so even an honest job description does not bound what the bank reads;
* R13-SCO-14 (bad input): an id cell holding a newline is joined with "\n" and split again by the partner (and by
  the bank's GBDT handler): LR fails with "operands could not be broadcast together" (no file, no row), GBDT
  silently scores one cell as two applicants;
* R13-SCO-15: a scoring job's description (`job_description`) holds the model run but not the kind; `check_request`
  lets the coordinator load and run the GBDT part (`vertical.load_model kind=gbdt`, `vgb.score_*`: the bank learns
  the partner's routing bit at every split, i.e. intervals of its feature values) in a job announced as LR (the
  bank learns one summed contribution), and the partner's audit record of the job cannot tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.applicants import ApplicantsPolicy
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.session import VerticalSession


def _session() -> tuple[VerticalSession, dict, dict]:
    tables = {k: v for k, v in make_sme_consortium(300, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    for name, p in parties.items():
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        np.zeros(d))
    session = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="r13-sco")
    session.connect()
    return session, parties, tables


def test_a_scoring_job_naming_a_file_outside_the_banks_applicants_is_refused(tmp_path: Path) -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request, job_description

    training_file = tmp_path / "bank" / "loans.csv"  # the bank's own training table (or its key, or /dev/zero)
    config = {"scoring": {"model": "run-1", "applicants_file": str(training_file), "id_column": "defaulted"}}
    job = job_description(config, workflow="scoring", operator="ops", parties=["bank", "payments"],
                          label_holder="bank")
    allow = AllowSection.model_validate({"partners": ["payments"]})
    check_request(allow, "bank", "score.start", {"request_id": "r/1", "partners": ["payments"], "bank": "bank",
                                                  "applicants_file": str(training_file), "id_column": "defaulted"}, job)
    with pytest.raises(JobRefused):  # what should hold: only files the bank itself designated for applicants
        check_job(allow, "bank", job, "vertical", ["revenue"])


def test_the_coordinator_cannot_read_a_file_through_the_banks_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"  # any file the bank agent can read
    secret.write_text("SECRET-hunter2,other\n1,2\n")
    session, parties, _ = _session()  # worst case: the bank even declared that file as an applicants file
    parties["bank"].scoring.applicants = ApplicantsPolicy(files=(str(secret),))
    with pytest.raises(PartyError) as caught:
        session._score({}, {"applicants_file": str(secret), "id_column": "no_such_column"})
    assert "hunter2" not in str(caught.value), str(caught.value)


def test_a_partner_never_receives_another_column_of_a_bank_file(tmp_path: Path) -> None:
    session, parties, tables = _session()
    bank = tables["bank"]
    labels = [str(int(v)) for v in bank.y[:40]]
    training_file = tmp_path / "loans.csv"  # the bank's training table on its own machine
    training_file.write_text("reg_no,defaulted\n" + "".join(f"{i},{y}\n" for i, y in zip(bank.ids[:40], labels,
                                                                                          strict=True)))
    partner = parties["payments"].scoring
    seen: list[list[str]] = []
    lookup = partner._rows_for

    def spy(applicants: list[str]) -> np.ndarray:  # what the partner decrypts from the bank's sealed query
        seen.append(list(applicants))
        return lookup(applicants)

    partner._rows_for = spy
    with pytest.raises(PartyError, match="applicants"):  # the bank declared no applicants file: refused
        session._score({}, {"applicants_file": str(training_file), "id_column": "defaulted"})
    parties["bank"].scoring.applicants = ApplicantsPolicy(folder=str(tmp_path), protected=("defaulted",))
    with pytest.raises(PartyError, match="schema columns"):  # declared folder, but its label column is never ids
        session._score({}, {"applicants_file": str(training_file), "id_column": "defaulted"})
    assert labels not in seen, "the partner received the bank's labels, row by row"


def test_the_bank_refuses_an_endless_applicants_file_quickly() -> None:
    import signal
    import subprocess
    import sys

    # the 4 s bound covers the read only: interpreter start and imports (seconds on a loaded CI runner, cold .pyc)
    # get their own generous limit, so only a bank that keeps reading fails
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "import signal\nfrom sampan.errors import DataError\n"
            "from sampan.vertical.scoring import read_applicant_ids\nsignal.alarm(4)\n"
            "try:\n    read_applicant_ids('bank', '/dev/zero', 'reg_no')\nexcept DataError:\n    print('refused')\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the bank was still reading /dev/zero after 120 s")
    assert done.returncode != -signal.SIGALRM, "the bank was still reading /dev/zero after 4 s"
    assert "refused" in done.stdout, done.stderr[-300:]


def test_a_training_job_never_makes_the_bank_read_a_file() -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_request, job_description

    config = {"vertical": {"label_holder": "bank", "models": ["lr", "gbdt"]}}
    job = job_description(config, workflow="vertical", operator="ops", parties=["bank", "payments"],
                          label_holder="bank")
    allow = AllowSection.model_validate({"partners": ["payments"]})
    base = {"request_id": "r/1", "partners": ["payments"], "bank": "bank"}
    refused = []
    for kind in ("score.start", "vgb.score_start"):
        try:
            check_request(allow, "bank", kind, {**base, "applicants_file": "/bank/state/party.db",
                                                "id_column": "label"}, job)
        except JobRefused:
            refused.append(kind)
    assert refused == ["score.start", "vgb.score_start"], "the bank would read a file no job announced"


def test_an_id_with_a_newline_is_refused_naming_the_file_and_row(tmp_path: Path) -> None:
    session, parties, tables = _session()
    ids = [str(i) for i in tables["bank"].ids[:3]]
    path = tmp_path / "applicants.csv"
    parties["bank"].scoring.applicants = ApplicantsPolicy(folder=str(tmp_path))
    path.write_text(f'reg_no\n"{ids[0]}\n{ids[1]}"\n{ids[2]}\n')
    with pytest.raises(PartyError) as caught:
        session._score({}, {"applicants_file": str(path), "id_column": "reg_no"})
    assert "applicants.csv" in str(caught.value) and "row" in str(caught.value), str(caught.value)


def test_a_scoring_job_announces_the_model_kind_its_partners_answer_for() -> None:
    from sampan.deploy.allow import AllowSection, JobRefused, check_request, job_description

    config = {"scoring": {"model": "run-1", "applicants": ["BR1"], "kind": "lr"}}
    job = job_description(config, workflow="scoring", operator="ops", parties=["bank", "payments"],
                          label_holder="bank")
    allow = AllowSection.model_validate({"partners": ["bank"], "label_holders": ["bank"]})
    base = {"request_id": "r/1", "partners": ["payments"], "bank": "bank"}
    with pytest.raises(JobRefused):  # the job announced LR: a GBDT part must not be loaded nor answered
        check_request(allow, "payments", "vertical.load_model", {"model_run": "run-1", "kind": "gbdt"}, job)
        check_request(allow, "payments", "vgb.score_partial", base, job)


def test_the_bank_reads_only_regular_files_inside_its_own_folder(tmp_path: Path) -> None:
    """R13-SCO-1/10: a symlink out of the bank's applicants folder, a device and a file elsewhere are refused; a
    file inside is read (a BOM dropped); the job check at the bank admits that file and refuses the others."""
    from sampan.deploy.allow import AllowSection, JobRefused, check_job, job_description
    from sampan.errors import DataError
    from sampan.vertical.applicants import applicant_ids

    folder = tmp_path / "applicants"
    folder.mkdir()
    secret = tmp_path / "loans.csv"
    secret.write_text("reg_no\nS1\n")
    (folder / "escape.csv").symlink_to(secret)
    (folder / "today.csv").write_text("\ufeffreg_no\n007\n008\n", encoding="utf-8")
    policy = ApplicantsPolicy(folder=str(folder))
    assert applicant_ids("bank", policy, {"applicants_file": str(folder / "today.csv")}) == ["007", "008"]
    for path in (folder / "escape.csv", secret, Path("/dev/zero"), folder / ".." / "loans.csv"):
        with pytest.raises(DataError, match="refuses the applicants file"):
            applicant_ids("bank", policy, {"applicants_file": str(path)})
    allow = AllowSection.model_validate({"partners": ["payments"], "applicants_dir": str(folder)})
    for path, ok in ((folder / "today.csv", True), (folder / "escape.csv", False), (secret, False)):
        job = job_description({"scoring": {"model": "run-1", "applicants_file": str(path)}}, workflow="scoring",
                              operator="ops", parties=["bank", "payments"], label_holder="bank")
        if ok:
            check_job(allow, "bank", job, "vertical", ["revenue"])
        else:
            with pytest.raises(JobRefused, match="applicants"):
                check_job(allow, "bank", job, "vertical", ["revenue"])
