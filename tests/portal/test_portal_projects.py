"""Projects, questionnaires and qualification: ownership (an applicant attacks another's project through the
public Portal methods and gets NotFound), the bench token sealed and never returned, field-named refusals."""

from __future__ import annotations

import os
import stat

import pytest
from _core_fixtures import TOKEN, FakeQualifier, FakeRunner, applicant, claimed_project, make_portal, staff
from sqlalchemy import select

from sampan.runtime.store import Store
from sampan.web.errors import Conflict, Forbidden, Invalid, NotFound
from sampan.web.portal import tables as t
from sampan.web.portal.seal import KEY_FILE, BenchTokenSeal, SealError


@pytest.fixture
def portal(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    yield make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs"))
    store.close()


def _self_signed_pem() -> str:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fl.acme.example")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=9))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_create_project_seals_token_and_never_returns_it(portal, tmp_path) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    pem = _self_signed_pem()
    pid = portal.create_project(vendor, "Acme FL", "https://fl.acme.example/bench/v1", pem, TOKEN)
    shown = portal.project(vendor, pid)
    assert shown["name"] == "Acme FL" and shown["has_bench_token"] and shown["tls_cert_pem"].startswith("-----BEGIN")
    assert shown["owner_email"] == "vendor@acme.example" and shown["company"] == "Acme FL"
    assert TOKEN not in repr(shown) and TOKEN not in repr(portal.projects(vendor))
    with portal.engine.connect() as c:
        sealed = c.execute(select(t.projects.c.bench_token_sealed)).scalar()
    assert TOKEN not in sealed and portal.seal.open(pid, sealed) == TOKEN
    key = tmp_path / "portal" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(SealError):  # bound to the project: moved to another project's row it does not open
        portal.seal.open(pid + 1, sealed)
    with pytest.raises(SealError):  # another portal's key cannot open it
        BenchTokenSeal(tmp_path / "other").open(pid, sealed)


def test_seal_key_file_readable_by_others_is_refused(tmp_path) -> None:
    seal = BenchTokenSeal(tmp_path / "p")
    stored = seal.seal(1, TOKEN)
    os.chmod(tmp_path / "p" / KEY_FILE, 0o644)
    with pytest.raises(SealError, match="bench token key"):
        BenchTokenSeal(tmp_path / "p").open(1, stored)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("name", {"name": ""}),
    ("endpoint_url", {"endpoint_url": "ftp://fl.acme.example"}),
    ("endpoint_url", {"endpoint_url": "https://user:pw@fl.acme.example/"}),
    ("endpoint_url", {"endpoint_url": "fl.acme.example"}),
    ("tls_cert_pem", {"tls_cert_pem": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"}),
    ("bench_token", {"bench_token": ""}),
    ("bench_token", {"bench_token": "two words"}),
])
def test_create_project_refusals_name_the_field(portal, field, kwargs) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    args = {"name": "Acme", "endpoint_url": "https://fl.acme.example", "tls_cert_pem": "", "bench_token": TOKEN,
            **kwargs}
    with pytest.raises(Invalid) as refused:
        portal.create_project(vendor, **args)
    assert refused.value.field == field
    assert portal.projects(vendor) == []


def test_reviewer_cannot_create_projects(portal) -> None:
    reviewer = staff(portal, "rev@portal.example", "reviewer")
    with pytest.raises(Forbidden):
        portal.create_project(reviewer, "X", "https://x.example", "", TOKEN)


def test_applicant_cannot_see_or_act_on_anothers_project(portal) -> None:
    """Attack: Mallory, a registered applicant, probes Alice's project and evaluation ids through every public
    method; each answers NotFound exactly as for an id that does not exist."""
    alice = applicant(portal, "alice@acme.example", "Acme")
    mallory = applicant(portal, "mallory@evil.example", "Evil")
    pid = claimed_project(portal, alice)
    eid = portal.start_evaluation(alice, pid)
    portal.runner.finish(eid)
    rid = portal.request_full_report(alice, eid, "INV-1")
    assert portal.projects(mallory) == []
    assert portal.release_requests(mallory) == []
    attempts = [
        lambda i: portal.project(mallory, i),
        lambda i: portal.questionnaire(mallory, i),
        lambda i: portal.last_qualification(mallory, i),
        lambda i: portal.evaluations(mallory, i),
        lambda i: portal.save_questionnaire(mallory, i, {}, "", False, ""),
        lambda i: portal.qualify(mallory, i),
        lambda i: portal.start_evaluation(mallory, i),
        lambda i: portal.update_project(mallory, i, bench_token="mine"),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound) as real:
            attempt(pid)
        with pytest.raises(NotFound) as absent:
            attempt(pid + 1000)
        assert real.value.message.replace(str(pid), "N") == absent.value.message.replace(str(pid + 1000), "N")
    for attempt in [lambda i: portal.evaluation(mallory, i),
                    lambda i: portal.report_file(mallory, i, "html", False),
                    lambda i: portal.report_file(mallory, i, "json", True),
                    lambda i: portal.cancel_evaluation(mallory, i),
                    lambda i: portal.request_full_report(mallory, i, "INV-2")]:
        with pytest.raises(NotFound):
            attempt(eid)
    with pytest.raises(Forbidden):  # an applicant cannot decide even a request it could name
        portal.decide_release(mallory, rid, True, "")
    assert portal.release_requests(alice)[0]["status"] == "pending"
    assert portal.project(alice, pid)["questionnaire"]["notes"] == "we implement the reference API"


def test_reviewer_reads_but_does_not_act(portal) -> None:
    alice = applicant(portal, "alice@acme.example")
    reviewer = staff(portal, "rev@portal.example", "reviewer")
    pid = claimed_project(portal, alice)
    assert [p["id"] for p in portal.projects(reviewer)] == [pid]
    assert portal.project(reviewer, pid)["can_act"] is False
    for act in (lambda: portal.qualify(reviewer, pid), lambda: portal.start_evaluation(reviewer, pid),
                lambda: portal.save_questionnaire(reviewer, pid, {}, "", False, "")):
        with pytest.raises(Forbidden):
            act()


def test_questionnaire_validation_and_replacement(portal) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    pid = portal.create_project(vendor, "Acme", "https://fl.acme.example", "", TOKEN)
    with pytest.raises(Invalid) as unknown:
        portal.save_questionnaire(vendor, pid, {"F-NOT-A-TEST": True}, "", True, "")
    assert unknown.value.field == "claims" and "F-NOT-A-TEST" in unknown.value.message
    with pytest.raises(Invalid) as docs:
        portal.save_questionnaire(vendor, pid, {}, "javascript:alert(1)", True, "")
    assert docs.value.field == "api_docs_url"
    assert portal.questionnaire(vendor, pid) is None
    portal.save_questionnaire(vendor, pid, {"F-API-VERSION": True}, "https://docs.acme.example", True, "v1")
    portal.save_questionnaire(vendor, pid, {"F-TLS": True, "F-API-VERSION": False}, "", False, "v2")
    q = portal.questionnaire(vendor, pid)
    assert q["claims"] == {"F-TLS": True, "F-API-VERSION": False} and q["notes"] == "v2"
    assert not q["implements_reference_api"]


def test_qualification_failure_is_stored_and_token_scrubbed(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    qualifier = FakeQualifier(passed=False)
    portal = make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs"), qualifier=qualifier)
    vendor = applicant(portal, "vendor@acme.example")
    pid = portal.create_project(vendor, "Acme", "https://fl.acme.example", "", TOKEN)
    portal.save_questionnaire(vendor, pid, {}, "", True, "")
    report = portal.qualify(vendor, pid)
    assert qualifier.calls[0][1] == TOKEN  # the check itself gets the real token
    assert not report["passed"] and [c["status"] for c in report["checks"]] == ["passed", "failed", "skipped"]
    failed = report["checks"][1]
    assert failed["name"] == "token" and "[bench token]" in failed["detail"] and failed["fix"]
    assert TOKEN not in repr(report) and TOKEN not in repr(portal.project(vendor, pid))
    with pytest.raises(Conflict) as refused:
        portal.start_evaluation(vendor, pid)
    assert refused.value.field == "qualification"
    store.close()


def test_qualifier_that_raises_becomes_a_failed_check(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")

    def broken(url, token, pem, policy):
        raise RuntimeError(f"boom while sending {token}")

    portal = make_portal(store, tmp_path / "portal", qualifier=broken)
    vendor = applicant(portal, "vendor@acme.example")
    pid = portal.create_project(vendor, "Acme", "https://fl.acme.example", "", TOKEN)
    report = portal.qualify(vendor, pid)
    assert not report["passed"] and report["checks"][0]["name"] == "qualification"
    assert TOKEN not in repr(report) and "RuntimeError" in report["checks"][0]["detail"]
    store.close()


def test_update_project_voids_the_qualification(portal) -> None:
    """Attack: pass the check with a good endpoint, then switch to another one and start the evaluation."""
    vendor = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, vendor)
    portal.update_project(vendor, pid, endpoint_url="https://fl2.acme.example/bench/v1", bench_token="new-token-1")
    assert portal.project(vendor, pid)["endpoint_url"] == "https://fl2.acme.example/bench/v1"
    last = portal.last_qualification(vendor, pid)
    assert last["status"] == "failed" and last["checks"][0]["name"] == "server information changed"
    with pytest.raises(Conflict) as refused:
        portal.start_evaluation(vendor, pid)
    assert refused.value.field == "qualification"
    assert portal.qualify(vendor, pid)["passed"]
    assert portal._qualifier.calls[-1][1] == "new-token-1"
    entry = [e for e in portal.store.events("portal") if e.kind == "portal.project_updated"][0]
    assert entry.detail["changed"] == ["bench_token", "endpoint_url"] and "new-token-1" not in str(entry.detail)
