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
    book.admit("j1", 1.0, 0.0)
    book.settle("j1")
    clock.now += 31 * 86400
    book.reserve("j2", "loans", 1.0, 0.0)
    book.admit("j2", 1.0, 0.0)
    book.settle("j2")
    clock.now += 31 * 86400
    book.reserve("j3", "loans", 1.0, 0.0)
    clock.now += 31 * 86400
    with pytest.raises(BudgetRefused, match="remaining lifetime budget 0"):  # the total is spent: no new period
        book.reserve("j4", "loans", 0.1, 0.0)


def test_an_open_reservation_counts_in_every_period_window_until_it_is_spent_or_settled(tmp_path: Path) -> None:
    """R14-CONSENT-2: a reservation made before the window still counts while open; spending is counted by the
    time it was charged, and the cap is checked again at each charge."""
    clock = Clock()
    book = _book(tmp_path, clock, epsilon=10.0, period_days=30, period_epsilon=1.0)
    book.reserve("old", "loans", 1.0, 0.0)
    clock.now += 31 * 86400
    with pytest.raises(BudgetRefused, match="period cap"):
        book.reserve("new", "loans", 0.5, 0.0)
    book.admit("old", 0.4, 0.0)
    book.settle("old")  # 0.6 returns; 0.4 was charged today
    with pytest.raises(BudgetRefused, match="period cap"):
        book.reserve("new", "loans", 0.7, 0.0)
    book.reserve("new", "loans", 0.6, 0.0)
    clock.now += 31 * 86400
    book.reserve("later", "loans", 0.4, 0.0)  # the 0.4 charge left the window; `new` holds 0.6 unspent


def test_a_job_id_reserves_once_for_one_dataset_and_one_spend(tmp_path: Path) -> None:
    """R14-CONSENT-1: a job id asked again for another dataset or spend is refused, not given the first."""
    book = OwnerBudgetBook(tmp_path / "book.json", "bank_a",
                           {"loans": DatasetBudget(epsilon=5.0), "cards": DatasetBudget(epsilon=0.1)})
    book.reserve("job-1", "loans", 1.0, 1e-5)
    assert book.reserve("job-1", "loans", 1.0, 1e-5).reserved_epsilon == 1.0  # the same ask: idempotent
    with pytest.raises(BudgetRefused, match="already holds a reservation on dataset 'loans'"):
        book.reserve("job-1", "cards", 1.0, 1e-5)
    with pytest.raises(BudgetRefused, match="another planned spend"):
        book.reserve("job-1", "loans", 2.0, 1e-5)
    book.settle("job-1")
    with pytest.raises(BudgetRefused, match="settled"):
        book.reserve("job-1", "loans", 1.0, 1e-5)


def test_a_released_reservation_returns_whole_and_may_reserve_again(tmp_path: Path) -> None:
    book = _book(tmp_path, epsilon=3.0)
    book.reserve("j1", "loans", 2.0, 0.0)
    assert book.release("j1") is not None and book.status("loans")["remaining_epsilon"] == 3.0
    assert book.release("j1") is not None  # idempotent
    assert book.reserve("j1", "loans", 3.0, 0.0).reserved_epsilon == 3.0  # nothing was spent: a fresh reservation
    book.admit("j1", 0.5, 0.0)
    with pytest.raises(BudgetRefused, match="spent stays spent"):
        book.release("j1")


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
    with pytest.raises(BudgetRefused, match="another planned spend"):  # the first one stays (R14-CONSENT-1)
        _book(tmp_path, epsilon=3.0).reserve("j1", "loans", 0.1, 0.0)
    assert book.entry("j1") == first
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
        t.join(120)  # generous: eight threads queue on one file lock on a loaded 2-core machine
    assert not any(t.is_alive() for t in threads) and len(results) == 8, results
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
