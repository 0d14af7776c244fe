"""One lifetime privacy budget per data owner and dataset (issue 14, item 3): reserve, charge, settle."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sampan.files import atomic_write_bytes
from sampan.privacy.owner_budget import BudgetRefused, DatasetBudget, OwnerBudgetBook


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _book(tmp_path: Path, clock: Clock | None = None, **limit: float) -> OwnerBudgetBook:
    return OwnerBudgetBook(tmp_path / "book.json", "bank_a", {"loans": DatasetBudget(**limit)},
                           clock=clock or Clock())


def test_reserve_charge_settle_releases_the_unspent_rest(tmp_path: Path) -> None:
    book = _book(tmp_path, epsilon=3.0, delta=1e-4)
    book.reserve("j1", "loans", 2.0, 1e-5)
    assert book.status("loans")["remaining_epsilon"] == pytest.approx(1.0)
    with pytest.raises(BudgetRefused, match=r"bank_a.*loans.*remaining lifetime budget 1.*") as refused:
        book.reserve("j2", "loans", 1.5, 1e-5)
    assert "1.5" in str(refused.value)  # names the requested epsilon too
    book.admit("j1", 0.5, 1e-5)
    book.admit("j1", 0.8, 1e-5)
    with pytest.raises(BudgetRefused, match="beyond its reservation"):
        book.admit("j1", 2.1, 1e-5)
    book.settle("j1")
    status = book.status("loans")
    assert status["spent_epsilon"] == pytest.approx(0.8) and status["reserved_epsilon"] == pytest.approx(0.0)
    assert status["remaining_epsilon"] == pytest.approx(2.2)
    book.reserve("j2", "loans", 1.5, 1e-5)  # fits now that j1's unspent 1.2 came back
    with pytest.raises(BudgetRefused, match="settled"):
        book.admit("j1", 0.9, 1e-5)  # a settled job spends nothing more


def test_a_cancelled_job_keeps_what_it_spent_and_history_tracks_every_step(tmp_path: Path) -> None:
    clock = Clock()
    book = _book(tmp_path, clock, epsilon=5.0)
    book.reserve("j1", "loans", 2.0, 1e-5)
    clock.now += 10
    book.admit("j1", 1.0, 1e-5)
    clock.now += 10
    book.settle("j1", "cancelled")
    assert book.status("loans")["spent_epsilon"] == pytest.approx(1.0)
    history = book.history("loans")
    assert [h["event"] for h in history] == ["reserve", "charge", "settle"]
    assert [h["held_epsilon"] for h in history] == [pytest.approx(2.0), pytest.approx(2.0), pytest.approx(1.0)]
    assert history[0]["at"] < history[1]["at"] < history[2]["at"] and history[2]["outcome"] == "cancelled"


def test_the_period_cap_slows_spending_and_never_refills_the_total(tmp_path: Path) -> None:
    clock = Clock()
    book = _book(tmp_path, clock, epsilon=3.0, period_days=30, period_epsilon=1.0)
    book.reserve("j1", "loans", 1.0, 0.0)
    with pytest.raises(BudgetRefused, match="period cap"):
        book.reserve("j2", "loans", 0.5, 0.0)
    clock.now += 31 * 86400
    book.reserve("j2", "loans", 1.0, 0.0)
    clock.now += 31 * 86400
    book.reserve("j3", "loans", 1.0, 0.0)
    clock.now += 31 * 86400
    with pytest.raises(BudgetRefused, match="remaining lifetime budget 0"):  # the total is spent: no new period
        book.reserve("j4", "loans", 0.1, 0.0)


def test_deltas_add_across_jobs(tmp_path: Path) -> None:
    book = _book(tmp_path, epsilon=100.0, delta=2e-5)
    book.reserve("j1", "loans", 1.0, 1e-5)
    book.reserve("j2", "loans", 1.0, 1e-5)
    with pytest.raises(BudgetRefused, match="delta"):
        book.reserve("j3", "loans", 1.0, 1e-5)


def test_reserve_and_charge_are_idempotent_per_job_and_survive_a_crash_before_the_reply(tmp_path: Path) -> None:
    book = _book(tmp_path, epsilon=3.0)
    first = book.reserve("j1", "loans", 2.0, 1e-5)
    # the agent crashed after the write, before its reply: the coordinator asks again (a restarted process)
    again = _book(tmp_path, epsilon=3.0).reserve("j1", "loans", 2.0, 1e-5)
    assert again == first and book.status("loans")["remaining_epsilon"] == pytest.approx(1.0)
    assert _book(tmp_path, epsilon=3.0).reserve("j1", "loans", 0.1, 0.0).reserved_epsilon == 2.0  # first one stays
    book.admit("j1", 1.0, 1e-5)
    book.admit("j1", 1.0, 1e-5)  # a resumed run re-reporting the same total charges nothing more
    book.admit("j1", 0.5, 1e-5)  # nor a smaller one
    assert book.status("loans")["spent_epsilon"] == pytest.approx(1.0)
    assert [h["event"] for h in book.history()].count("reserve") == 1


def test_a_crash_mid_write_leaves_the_last_whole_book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = _book(tmp_path, epsilon=3.0)
    book.reserve("j1", "loans", 1.0, 0.0)
    before = (tmp_path / "book.json").read_text()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("sampan.privacy.owner_budget.atomic_write_bytes", crash)
    with pytest.raises(OSError):
        book.reserve("j2", "loans", 1.0, 0.0)
    monkeypatch.setattr("sampan.privacy.owner_budget.atomic_write_bytes", atomic_write_bytes)
    assert (tmp_path / "book.json").read_text() == before
    assert json.loads(before)["jobs"].keys() == {"j1"} and book.entry("j2") is None


def test_concurrent_reservations_from_two_threads_never_overbook(tmp_path: Path) -> None:
    results: dict[str, str] = {}
    start = threading.Barrier(8)

    def reserve(i: int) -> None:
        book = _book(tmp_path, epsilon=3.0)  # each thread its own book object over the same file
        start.wait()
        try:
            book.reserve(f"j{i}", "loans", 1.0, 0.0)
            results[f"j{i}"] = "ok"
        except BudgetRefused:
            results[f"j{i}"] = "refused"

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results.values()).count("ok") == 3
    assert _book(tmp_path, epsilon=3.0).status("loans")["remaining_epsilon"] == pytest.approx(0.0)


def test_exact_jobs_reserve_nothing_and_open_ended_jobs_are_bounded_by_the_remainder(tmp_path: Path) -> None:
    book = _book(tmp_path, epsilon=1.0)
    book.reserve("exact", "loans", 0.0, 0.0)
    assert book.status("loans")["exact_jobs"] == 1
    book.reserve("open", "loans", 0.0, 0.0, open_ended=True)
    book.admit("open", 0.6, 0.0)
    with pytest.raises(BudgetRefused, match="remaining lifetime budget"):
        book.admit("open", 1.2, 0.0)
    with pytest.raises(BudgetRefused, match="no reservation"):
        book.admit("nobody", 0.1, 0.0)
    with pytest.raises(BudgetRefused, match="no dataset 'other'"):
        book.reserve("j", "other", 0.1, 0.0)
