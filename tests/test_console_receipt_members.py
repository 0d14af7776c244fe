"""Found by the console's browser walk: members of `sampan console` showed "Certificate: none" although their
folder holds each party's certificate, and a run's privacy receipt was raw JSON. Now the console records the
certificate the coordinator already holds when the admin invites the organisation (and shows its fingerprint),
and the receipt is a page of tables (what each party sent under which protection, epsilon per party and level,
the consent terms) with the raw JSON one link away."""

from __future__ import annotations

import json
import re
from pathlib import Path

from _console import make_console, post, seeded, wizard_form

from sampan.web.console.rendering import certificate_fingerprint
from sampan.web.embedded import _party_certificates
from sampan.web.embedded_files import make_console_folder


def test_an_invited_member_gets_the_certificate_the_coordinator_holds_for_it(tmp_path: Path) -> None:
    folder = make_console_folder(tmp_path / "folder", n_smes=600, seed=1)
    known = _party_certificates(folder)
    assert set(known) == set(folder.parties)
    console = make_console(tmp_path)
    world = console.world
    world.plane.known_certificates = known  # what EmbeddedConsole does at start
    cid = int(world.plane.create_consortium(world.admin, "HK SME lending")["id"])
    world.user("admin2", "consortium_admin")
    admin = console.signed_in("admin2")
    page = f"/console/consortia/{cid}"
    for organisation in ("bank_harbour", "bank_other"):  # the second has no certificate on file here
        invited = post(admin, page, f"{page}/members", {"organisation": organisation, "role": "bank"})
        assert invited.status_code == 200, invited.text[-500:]
    members = {m["organisation"]: m for m in world.plane.consortium(world.admin, cid)["member_details"]}
    assert members["bank_harbour"]["certificate_pem"] == known["bank_harbour"]
    assert members["bank_other"]["certificate_pem"] is None
    shown = admin.get(page).text
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r'<tr data-test="member-row"><td>([a-z_]+)</td>.*?data-test="member-certificate">(.*?)</td>', shown, re.S)}
    assert "on file" in rows["bank_harbour"] and certificate_fingerprint(known["bank_harbour"]) in rows["bank_harbour"]
    assert "none" in rows["bank_other"]


RECEIPT = {
    "workflow": "horizontal", "status": "completed", "differential_privacy": True, "accountant": "rdp", "delta": 1e-5,
    "unit_of_privacy": "record-level within each party", "threat_model": "semi-honest parties",
    "parties": {"bank_a": {"sent": [{"kind": "horizontal.update", "messages": 3, "bytes": 4096,
                                     "protection": "DP-SGD (DP2) at the party"}],
                           "budget": {"epsilon": 1.0, "delta": 1e-5}, "epsilon_spent": 0.97,
                           "epsilon_by_level": {"DP1": 0.02, "DP2": 0.95, "DP3": 0.0}}},
    "consent": {"spec_hash": "ab" * 32, "parties": {"bank_a": {"dataset": "sme_loans", "decided_by": "bank_a-op",
                                                               "reserved": {"epsilon": 1.0, "delta": 1e-5},
                                                               "exact": False}}},
    "note": "<script>alert(3)</script>"}


def test_the_receipt_is_a_readable_page_with_the_raw_json_one_link_away(tmp_path: Path) -> None:
    console, _ = seeded(tmp_path)
    reports = tmp_path / "reports"
    reports.mkdir()
    admin = console.signed_in("admin2")
    form = wizard_form("j", extra=f'[run]\nreport_dir = "{reports}"\n')
    made = post(admin, "/console/jobs/new", "/console/jobs", form)
    job_id = int(str(made.url).rsplit("/", 1)[1])
    post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/submit", {})
    for bank in ("bank_a", "bank_b", "bank_c"):
        post(console.signed_in(f"{bank}-op"), "/console/approvals", f"/console/approvals/{job_id}/approve", {})
    run_id = str(post(admin, f"/console/jobs/{job_id}", f"/console/jobs/{job_id}/start", {}).url).rsplit("/", 1)[1]
    (reports / f"{run_id}.receipt.json").write_text(json.dumps({"run_id": run_id, **RECEIPT}))
    auditor = console.signed_in("auditor")
    assert f'href="/console/runs/{run_id}/receipt"' in auditor.get(f"/console/runs/{run_id}").text
    page = auditor.get(f"/console/runs/{run_id}/receipt")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    sent = html.split('data-test="receipt-sent-bank_a"')[1].split("</table>")[0]
    assert "horizontal.update" in sent and "4096" in sent and "DP-SGD (DP2) at the party" in sent
    epsilon = html.split('data-test="receipt-epsilon"')[1].split("</table>")[0]
    assert all(f">{v}<" in epsilon for v in ("0.97", "0.02", "0.95", "1")) and ">DP2<" in epsilon
    consent = html.split('data-test="receipt-consent"')[1].split("</table>")[0]
    assert "sme_loans" in consent and "bank_a-op" in consent and "differentially private" in consent
    assert "ab" * 32 in html
    assert "<script>alert(3)" not in html and "&lt;script&gt;alert(3)" in html  # a file on disk, escaped
    assert f'href="/console/runs/{run_id}/receipt.json"' in html
    raw = auditor.get(f"/console/runs/{run_id}/receipt.json")
    assert raw.headers["content-type"].startswith("application/json") and json.loads(raw.text)["run_id"] == run_id
    # a receipt of another shape (a list, or fields of the wrong type) is refused or shown as far as it goes
    (reports / f"{run_id}.receipt.json").write_text(json.dumps({"parties": {"bank_a": {"sent": "x",
                                                                                        "epsilon_spent": "many"}}}))
    assert auditor.get(f"/console/runs/{run_id}/receipt").status_code == 200
    (reports / f"{run_id}.receipt.json").write_text("[1, 2]")
    assert auditor.get(f"/console/runs/{run_id}/receipt").status_code == 404
