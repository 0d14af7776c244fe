"""The console in a real browser (Playwright driving Debian's Chromium) over the real `sampan console` stack:
coordinator over gRPC with mutual TLS, three party agent processes, control plane + console over HTTP.

One story, in the order issue 14 tells it, every step through the pages a person uses (role and label locators,
so a field without a label or a button without a name fails the test):
1. the admin signs in (keyboard only), chooses a new password, creates a consortium and invites three banks;
2. each bank's operator signs in with the one-time password from the invitation, chooses its own, registers its
   dataset from its own agent's catalogue, and approves the job from the approval inbox (keyboard only: Tab to
   the button, Enter);
3. the job starts, the live run page updates itself (no reload) until the run completes, and its report opens;
4. a second job that reads one column fewer is refused by the party's agent: its approval does not cover it;
5. a job that would exceed a dataset's remaining lifetime budget cannot be approved;
6. the model is promoted (candidate -> approved) and exported as a download;
and a second, smaller run is compared with the first side by side.
Each page is screenshotted at 1280 px (`docs/console/` when SAMPAN_CONSOLE_SCREENSHOTS points there); on each,
every control, button and link must have an accessible name, and no page may trip the console's
Content-Security-Policy or answer a 5xx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BANKS = ("bank_harbour", "bank_kowloon", "bank_lionrock")
ADMIN_PASSWORD = "harbour lights over kowloon 14"
OPERATOR_PASSWORD = "lion rock at dawn, 2026!"
DROPPED = "sector"
RUN_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def people(chromium: Any, console_stack: tuple[Any, Any]) -> Iterator[Any]:
    from _people import People

    made = People(chromium, console_stack[1].url)
    try:
        yield made
    finally:
        made.close()


def _wizard(admin: Any, shots: Any, name: str, epsilon: str, *, drop: str | None = None, shot: str | None = None
            ) -> str:
    """Fill the job wizard as a person would; returns the new job's page path (/jobs/<id>), sent for approval."""
    from playwright.sync_api import expect

    page = admin.open("/jobs")
    page.get_by_role("link", name="New job").click()
    expect(page.get_by_role("heading", name="New job")).to_be_visible()
    page.get_by_label("Job name").fill(name)
    expect(page.get_by_label("Workflow")).to_have_value("horizontal")
    for bank in BANKS:
        party = page.get_by_role("group", name=bank, exact=True)
        expect(party.get_by_role("checkbox", name=f"Read {bank}'s data")).to_be_checked()
        if drop:
            party.get_by_role("checkbox", name=drop, exact=True).uncheck()
    page.get_by_label("Rounds (vertical: epochs)").fill("3")
    page.get_by_label("Budget ε per party (empty: no differential privacy)").fill(epsilon)
    expect(page.get_by_role("checkbox", name="DP2 in training (DP-SGD)")).to_be_checked()
    if shot:
        shots.take(page, shot)
    page.get_by_role("button", name="Save draft and show its spec").click()
    expect(page.get_by_role("status").filter(has_text="Draft saved")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text("draft")
    path = re.sub(r"^.*/console", "", page.url)
    page.get_by_role("button", name="Send to the parties for approval").click()
    expect(page.get_by_test_id("job-status")).to_have_text("awaiting_approval")
    return path


def test_console_in_a_browser(console_stack: tuple[Any, Any], people: Any, screenshot_dir: Path) -> None:
    from _people import Screenshots
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)  # a loaded 2-core CI runs training beside the browser
    _embedded, started = console_stack
    assert started.first_start and started.admin_password
    shots = Screenshots(screenshot_dir)

    # --- 1. the admin: keyboard-only sign-in, own password, consortium, three banks invited ----------------------
    admin = people("admin")
    page = admin.page
    page.goto("/console/")
    shots.take(page, "sign-in")
    admin.sign_in(started.admin_password, keyboard=True)
    admin.change_password(started.admin_password, ADMIN_PASSWORD)  # a one-time password is for choosing one's own
    shots.take(page, "account")
    admin.open("/consortia")
    page.get_by_label("Consortium name").fill("HK SME lending")
    page.get_by_label("Description (optional)").fill("Three Hong Kong banks score SME loans together.")
    page.get_by_role("button", name="Create consortium").click()
    expect(page.get_by_role("heading", name="HK SME lending", level=1)).to_be_visible()
    invited: dict[str, tuple[str, str]] = {}
    for bank in BANKS:
        page.get_by_label("Organisation (its party name)").fill(bank)
        expect(page.get_by_label("Role in the consortium")).to_have_value("bank")
        page.get_by_role("button", name="Invite organisation").click()
        card = page.get_by_role("status").filter(has_text=f"{bank} invited")
        expect(card).to_be_visible()
        invited[bank] = (card.get_by_test_id("invited-username").inner_text(),
                         card.get_by_test_id("invited-password").inner_text())
    members = page.get_by_test_id("members-table")
    for bank in BANKS:
        expect(members.get_by_role("row").filter(has_text=bank)).to_have_count(1)
    shots.take(page, "consortium")
    admin.open("/consortia")
    expect(page.get_by_role("row").filter(has_text="HK SME lending")).to_contain_text("bank_lionrock")
    shots.take(page, "consortia")

    # --- 2a. each operator signs in with the one-time password and registers its dataset ---------------------------
    operators: dict[str, Any] = {}
    for i, bank in enumerate(BANKS):
        username, one_time = invited[bank]
        op = operators[bank] = people(username)
        op.sign_in(one_time, keyboard=(i == 0))
        op.change_password(one_time, OPERATOR_PASSWORD)
        op.open("/")
        expect(op.page).to_have_url(re.compile(r"/console/approvals$"))  # an operator's home is its inbox
        op.page.get_by_role("link", name="Datasets", exact=True).click()
        catalogue = op.page.get_by_test_id("catalogue")
        expect(catalogue).to_contain_text(f"Your agent's datasets ({bank})")
        if i == 0:
            shots.take(op.page, "datasets-register")
        op.page.get_by_role("button", name="Register dataset loans").click()
        expect(op.page.get_by_role("status")).to_contain_text("Dataset loans registered: schema and row count only.")
        expect(op.page.get_by_role("heading", name=f"{bank} / loans")).to_be_visible()
        expect(op.page.get_by_test_id("budget-remaining")).to_have_text("10")
        if i == 0:
            shots.take(op.page, "dataset")
        other = "bank_kowloon" if bank == "bank_harbour" else "bank_harbour"
        expect(op.page.get_by_role("main")).not_to_contain_text(f"{other}'s")  # its own catalogue only

    # --- 2b. the admin asks for a job through the wizard; each operator approves it, keyboard only -----------------
    job1 = _wizard(admin, shots, "fedavg-dp", "3", shot="job-new")
    for i, bank in enumerate(BANKS):
        op = operators[bank]
        inbox = op.open("/approvals")
        card = inbox.get_by_test_id("inbox-job").filter(has_text="fedavg-dp")
        expect(card.get_by_test_id("inbox-columns")).to_contain_text(DROPPED)
        expect(card.get_by_test_id("inbox-budget")).to_contain_text("ε 3")
        expect(card.get_by_test_id("inbox-remaining-after")).to_have_text("7")
        if i == 0:
            shots.take(inbox, "inbox")
        op.tab_to(card.get_by_role("button", name="Approve job fedavg-dp"))
        inbox.keyboard.press("Enter")
        expect(inbox.get_by_role("status").filter(has_text="approved: your agent signed the approval")).to_be_visible()
        expect(inbox.get_by_test_id("inbox-empty")).to_be_visible()

    # --- 3. it starts, the live page follows the run to the end, the report opens ---------------------------------
    page = admin.open(job1)
    expect(page.get_by_test_id("job-status")).to_have_text("approved")
    for bank in BANKS:
        expect(page.get_by_test_id(f"approval-{bank}")).to_contain_text("approved")
        expect(page.get_by_test_id(f"approval-{bank}")).to_contain_text(f"person:{invited[bank][0]}")
    shots.take(page, "job")
    page.get_by_role("button", name="Start the job").click()
    expect(page).to_have_url(re.compile(r"/console/runs/[^/]+$"))
    run_path = re.sub(r"^.*/console", "", page.url)
    live = page.get_by_test_id("run-live")
    first_state = live.get_attribute("data-state")
    page.evaluate("window.sampanSamePage = true")  # gone if the page reloads or navigates
    expect(live).to_have_attribute("data-state", "final", timeout=RUN_TIMEOUT_MS)
    if first_state == "live":  # console.js followed the run in place: same page, region refreshed, no reload
        assert page.evaluate("window.sampanSamePage === true") and page.url.endswith(run_path)
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(page.get_by_test_id("run-progress")).to_have_attribute("value", "3")
    eps_table = page.get_by_test_id("epsilon-table")
    for bank in BANKS:
        expect(eps_table.get_by_role("row", name=re.compile(bank))).to_be_visible()
    expect(page.get_by_test_id("rounds-table").get_by_role("row")).to_have_count(4)  # header + 3 rounds
    expect(page.get_by_test_id("events-table")).to_contain_text("run_completed")
    expect(page.get_by_role("link", name="Open the report")).to_be_visible(timeout=120_000)
    shots.take(page, "run")
    page.get_by_role("link", name="Open the report").click()
    expect(page).to_have_url(re.compile(r"/report$"))
    run_id = run_path.rsplit("/", 1)[-1]
    expect(page.locator("body")).to_contain_text(run_id)
    shots.take(page, "report")
    admin.open("/runs")
    expect(page.get_by_test_id("run-row").filter(has_text=run_id)).to_contain_text(re.compile("finished|completed"))
    shots.take(page, "runs")

    # --- 4. a job that reads one column fewer: the agent refuses, the approval does not cover it -------------------
    job2 = _wizard(admin, shots, "fedavg-dp-no-sector", "3", drop=DROPPED)
    kowloon = operators["bank_kowloon"]
    inbox = kowloon.open("/approvals")
    card = inbox.get_by_test_id("inbox-job").filter(has_text="fedavg-dp-no-sector")
    expect(card.get_by_test_id("inbox-columns")).not_to_contain_text(DROPPED)
    kowloon.tab_to(card.get_by_role("button", name="Approve job fedavg-dp-no-sector"))
    inbox.keyboard.press("Enter")
    refusal = inbox.get_by_test_id("inbox-error")
    expect(refusal).to_contain_text("data.columns")
    shots.take(inbox, "inbox-refused")
    page = admin.open(job2)
    expect(page.get_by_test_id("approval-bank_kowloon")).to_contain_text("refused")
    expect(page.get_by_test_id("job-status")).not_to_have_text("approved")
    expect(page.get_by_role("button", name="Start the job")).to_have_count(0)
    shots.take(page, "job-refused")

    # --- 5. a job over a dataset's remaining lifetime budget cannot be approved -----------------------------------
    page = admin.open("/datasets")
    remaining = [float(page.get_by_test_id("dataset-card").filter(has_text=f"{bank} / loans")
                       .get_by_test_id("budget-remaining").inner_text()) for bank in BANKS]
    assert all(0 < r < 10 for r in remaining), remaining  # job 1 spent, at every bank
    shots.take(page, "datasets")
    too_much = f"{max(remaining) + 0.5:.3f}"
    _wizard(admin, shots, "over-budget", too_much)
    lionrock = operators["bank_lionrock"]
    inbox = lionrock.open("/approvals")
    reason = "We do not train on a column set we have not reviewed."  # lionrock refuses job 2 itself, with a reason
    inbox.get_by_label("Reason for refusing fedavg-dp-no-sector").fill(reason)
    inbox.get_by_role("button", name="Refuse job fedavg-dp-no-sector").click()
    expect(inbox.get_by_role("status").filter(has_text="refused")).to_be_visible()
    decided = inbox.get_by_test_id("inbox-job").filter(has_text="fedavg-dp-no-sector")
    expect(decided).to_contain_text("refused")
    card = inbox.get_by_test_id("inbox-job").filter(has_text="over-budget")
    expect(card.get_by_test_id("inbox-remaining-after")).to_contain_text("this job cannot be approved")
    approve = card.get_by_role("button", name="Approve job over-budget")
    expect(approve).to_be_disabled()
    expect(approve).to_have_accessible_description("It needs more ε than the dataset has left.")
    shots.take(inbox, "inbox-over-budget")
    approve.evaluate("button => { button.disabled = false; }")  # an operator who edits the page still gets a no
    approve.click()
    short = re.compile(r"needs epsilon [0-9.]+.* which has only epsilon [0-9.]+")
    expect(inbox.get_by_test_id("inbox-error")).to_contain_text(short)
    expect(inbox.get_by_test_id("inbox-job").filter(has_text="over-budget")).to_contain_text("pending")
    page = admin.open("/jobs")
    expect(page.get_by_test_id("job-row").filter(has_text="over-budget")).to_contain_text("awaiting_approval")

    # --- 6. the model: candidate -> approved, exported --------------------------------------------------------------
    page = admin.open("/models")
    row = page.get_by_test_id("model-row").filter(has_text=run_id)
    expect(row.get_by_test_id("model-stage")).to_have_text("candidate")
    shots.take(page, "models")
    row.get_by_role("link").first.click()
    expect(page.get_by_test_id("model-stage")).to_have_text("candidate")
    expect(page.get_by_test_id("lineage")).to_contain_text(run_id)
    page.get_by_label("New stage").select_option("approved")
    page.get_by_label("Note (why)").fill("validated on the banks' hold-out rows")
    page.get_by_role("button", name="Change stage").click()
    expect(page.get_by_test_id("model-stage")).to_have_text("approved")
    shots.take(page, "model")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export (sampan-model JSON)").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert download.value.suggested_filename.endswith(".sampan-model.json")
    assert run_id in json.dumps(exported)

    # --- a second, smaller run (approved with the mouse this time), and the two runs side by side -------------------
    job4 = _wizard(admin, shots, "fedavg-dp-eps1", "1")
    for bank in BANKS:
        inbox = operators[bank].open("/approvals")
        inbox.get_by_role("button", name="Approve job fedavg-dp-eps1").click()
        expect(inbox.get_by_role("status").filter(has_text="approved: your agent signed the approval")).to_be_visible()
    page = admin.open(job4)
    page.get_by_role("button", name="Start the job").click()
    expect(page.get_by_test_id("run-live")).to_have_attribute("data-state", "final", timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    run2_id = page.url.rsplit("/", 1)[-1]
    page = admin.open("/runs")
    for rid in (run_id, run2_id):
        page.get_by_role("checkbox", name=f"Compare run {rid}").check()
    page.get_by_role("button", name="Compare selected runs").click()
    table = page.get_by_test_id("compare-table")
    expect(table.get_by_role("columnheader", name="fedavg-dp-eps1")).to_be_visible()
    expect(page.get_by_test_id("compare-config").filter(has_text="privacy.epsilon")).to_contain_text("3")
    shots.take(page, "compare")

    # --- the rest of the pages: jobs, approvals overview, accounts, audit log (chain intact) ------------------------
    page = admin.open("/jobs")
    expect(page.get_by_test_id("job-row")).to_have_count(4)
    shots.take(page, "jobs")
    page = admin.open("/approvals")
    shots.take(page, "approvals")
    page = admin.open("/jobs")
    page.get_by_role("link", name="Accounts", exact=True).click()
    expect(page.get_by_role("heading", name="Accounts", level=1)).to_be_visible()
    for username, _ in invited.values():
        expect(page.get_by_role("main")).to_contain_text(username)
    shots.take(page, "accounts")
    page = admin.open("/audit")
    expect(page.get_by_test_id("audit-verification")).to_have_attribute("data-ok", "true")
    shots.take(page, "audit")

    assert people.problems == [], people.problems
    sizes = {name: path.stat().st_size for name, path in shots.taken.items()}
    assert sum(sizes.values()) < 1_000_000, sizes  # docs/console stays small
