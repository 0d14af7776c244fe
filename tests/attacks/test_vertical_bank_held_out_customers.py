"""Review (issue 13) of the vertical held-out rules: the hash(seed, id) split, `[vertical] test_ids` and the
per-model evaluation-curve release (`sampan.metrics.score_bands`), through the parties' public messages, as a
curious or malicious coordinator. Each test pins one attack the review found (described below as found) and
fails if it works again. The fixes: bands merged to at least 10 rows (`score_bands`); the bank computes its own
test customers (`sampan.vertical.bank_splits`: its checked test file, else a hash keyed with its secret per-bank
split key, at most `max_test_fraction`) and evaluates no others first; a bank's datasets share one evaluation cap
and same-or-disjoint test sets (`rows.BankTests`).

R13-VCURVE-1: the 26 fixed PD bands have no small-cell rule. A band that holds one test row releases that
row's label (``pos``) and its exact PD (``sum_pd``): a record, not an aggregate, for every model evaluated (up to
`max_evaluations`). The horizontal group release zeroes levels under 10 rows; the bands do not.

R13-VSPLIT-1: the README says "the held-out customers follow hash(run seed, id), computed at the bank", and a bank
may fix them with `[vertical] test_ids`. But the bank never checks the evaluation rows against either: the first
evaluation the coordinator sends fixes the test set (`RowBook.admit_evaluation`: only >= 50 rows, none used for
fitting). A coordinator ignores the bank's file and evaluates on any rows, e.g. 68% of the aligned customers
(none of the bank's test customers): no upper bound on the share that leaves the DP unit either (the horizontal
agent's `[privacy] max_test_fraction` does not apply to vertical jobs).

R13-VSPLIT-2: the coordinator chooses the seed, and `vertical.splits` returns every set sorted by
sha256("sampan/split/order/<seed>/<id>"), a public function. Knowing one customer's id, the coordinator grinds
seeds (0.1 s) until that id's order hash is tiny and its holdout hash puts it in the test set: then
``splits.test[0]`` is that customer's aligned position ("the positions of a fresh random order tell it nothing
about who the customers are", `VerticalParty.pinned_splits`). It can also steer any known customer into the test
set (outside the DP unit) or out of it.

R13-VSPLIT-3: a `test_ids` file that names no aligned customer is not refused when the bank reads it or answers
`vertical.splits`: the run fits (pinning the training and validation customers in the bank's persisted row book)
and only the evaluation fails ("refusing held-out evaluation of 0 rows", the file unnamed). The dataset's
partition is then pinned without test customers, so the corrected file can never take effect: its customers are
already training rows.

R13-VSPLIT-4: the test set and the evaluation cap are fixed per row book, which a deployed agent keys by dataset
name (`PartyAgent._vertical_rows`), not per customer. Two datasets of the same customers give two first
evaluations; with R13-VSPLIT-2 the coordinator drops a chosen customer from one and reads its label from the
default rates (`[privacy] max_evaluations` says "over all its runs and datasets").

R13-VSPLIT-5: a `test_ids` file the bank adds after the dataset's first evaluation is silently ignored: the
pinned test rows come back from `vertical.splits` (and `sampan runs holdout` exports them), no word that the
file was not used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.core.transport import PartyError
from sampan.crypto.simulated_ca import simulated_consortium
from sampan.data import make_sme_consortium
from sampan.runtime.capabilities import get_capability
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.rows import BankTests, RowBook
from sampan.vertical.session import VerticalSession


def _tables(n: int = 1000) -> dict[str, Any]:
    return {k: v for k, v in make_sme_consortium(n, seed=9).vertical.items() if k in ("bank", "payments")}


def _session(tables: dict[str, Any], run_id: str, *, test_ids: Path | None = None, state: Path | None = None,
             spread: float = 0.1, book: RowBook | None = None) -> tuple[VerticalSession, dict[str, Any]]:
    """Bank and one partner as a deployment builds them (optionally a test file, persisted row books, the bank's
    row book of one of its datasets), aligned; each party holds a linear part (any model: the attacks do not
    depend on it)."""
    vertical = get_capability("vertical")
    verifier, identities = simulated_consortium(list(tables))

    def options(name: str) -> dict[str, Any]:
        if name != "bank":
            return {}
        return {**({"test_ids": str(test_ids)} if test_ids else {}), **({"row_book": book} if book else {})}

    parties = {name: vertical.party(PartySetup(  # type: ignore[attr-defined]
        name, data, {"workflow": "vertical"}, identity=identities[name], verifier=verifier,
        state_dir=state / name if state else None, options=options(name)))
        for name, data in tables.items()}
    s = VerticalSession(InProcessTransport({n: p.app for n, p in parties.items()}), label_holder="bank",
                        partners=["payments"], run_id=run_id)
    s.connect()
    s.align()
    rng = np.random.default_rng(0)
    for name, p in parties.items():
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names),
                                        LocalScaler(p.data.X.mean(0), p.data.X.std(0) + 1e-9), rng.normal(0, spread, d))
    return s, parties


def _aligned_ids(parties: dict[str, Any], s: VerticalSession) -> np.ndarray:
    return np.asarray([str(i) for i in parties["bank"]._ids_of(np.arange(s.n_aligned or 0))])


def test_no_band_isolates_one_test_record() -> None:
    s, parties = _session(_tables(), "curves", spread=1.0)
    splits = s.splits(seed=1, test_fraction=0.3)
    metrics = s.evaluate(splits.test)
    bands = metrics["curves"]
    pos, neg, sum_pd = (np.asarray(bands[k]) for k in ("pos", "neg", "sum_pd"))
    count = pos + neg
    # what the bank computed for these rows (kept at the bank), to check what the coordinator reads off a band
    bank = parties["bank"]
    pd = next(iter(bank.scoring.evaluated.values()))
    y = bank._aligned_y()[splits.test]
    from sampan.metrics.score_bands import BAND_LOGITS
    band_of = np.searchsorted(BAND_LOGITS, np.log(pd / (1 - pd)), side="right")
    for b in np.flatnonzero(count == 1):  # the coordinator's reading: this band's one row, its label and PD
        row = int(np.flatnonzero(band_of == b)[0])
        assert (pos[b], sum_pd[b]) == (y[row], pytest.approx(pd[row], abs=1e-12))
    # the project's small-cell rule (horizontal group release: fewer than 10 rows are not released)
    assert all(c == 0 or c >= 10 for c in count), f"band sizes released: {count.astype(int).tolist()}"


def test_the_bank_holds_the_coordinator_to_its_test_customers(tmp_path: Path) -> None:
    tables = _tables()
    common = sorted(set(map(str, tables["bank"].ids)) & set(map(str, tables["payments"].ids)))
    chosen = common[:120]
    path = tmp_path / "test_ids.csv"
    path.write_text("id\n" + "".join(f"{i}\n" for i in chosen))
    s, parties = _session(tables, "override", test_ids=path)
    honest = s.splits(seed=1)
    ids = _aligned_ids(parties, s)
    assert set(ids[honest.test]) == set(chosen)  # what the bank's file asks for
    other = np.setdiff1d(np.arange(s.n_aligned or 0), honest.test)  # 261 of 381 customers, none of the file's
    with pytest.raises(PartyError, match="refusing"):
        s.evaluate(other)


def _grind(target: str, test_cut: float = 0.05, order_cut: float = 2e-4) -> int:
    """The coordinator's search: a seed putting `target` in the test set and first in its seeded order."""
    def unit(label: str, seed: int) -> float:
        digest = hashlib.sha256(f"sampan/split/{label}/{seed}/{target}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0 ** 64

    return next(s for s in range(10 ** 7) if unit("order", s) < order_cut and unit("holdout", s) < test_cut)


def test_a_chosen_seed_does_not_reveal_where_a_known_customer_sits() -> None:
    s, parties = _session(_tables(), "grind")
    target = "BR25860591"  # one customer id the coordinator knows (a registration number), nothing else
    splits = s.splits(seed=_grind(target), test_fraction=0.2)
    assert _aligned_ids(parties, s)[splits.test[0]] != target


def test_a_test_file_without_aligned_customers_is_refused_before_anything_is_pinned(tmp_path: Path) -> None:
    tables = _tables(600)
    wrong, right = tmp_path / "wrong.csv", tmp_path / "right.csv"
    wrong.write_text("id\nX-1\nX-2\nX-1\n")  # unknown ids, a duplicate: no aligned customer
    common = sorted(set(map(str, tables["bank"].ids)) & set(map(str, tables["payments"].ids)))
    right.write_text("id\n" + "".join(f"{i}\n" for i in common[::3]))
    s, _ = _session(tables, "first", test_ids=wrong, state=tmp_path / "state")
    try:
        splits = s.splits(seed=1)
        s.bank_only(splits)  # the bank pins (persists) training and validation customers, then refuses 0 test rows
    except PartyError as exc:
        if "wrong.csv" in str(exc):
            return  # the property: a clear error naming the file, before any row set is pinned
    s2, _ = _session(tables, "second", test_ids=right, state=tmp_path / "state")  # the bank fixed its file
    assert len(s2.splits(seed=1).test) >= 50, "the corrected test file cannot take effect"


def test_two_datasets_of_the_same_customers_do_not_difference_a_label() -> None:
    """A deployed agent keeps one row book per (dataset, label holder) (`PartyAgent._vertical_rows`). A bank serving
    two datasets over the same customers (a snapshot and its refresh) gave a coordinator two first evaluations:
    dropping a ground target (R13-VSPLIT-2) from one and not the other differenced its label out of the released
    default rates. Now the bank evaluates only the test customers it computed (keyed split), and its datasets
    share one `BankTests`: a second dataset's test set that overlaps the first's but differs (here: two customers
    more, by asking a slightly larger share) is refused."""
    tables, target = _tables(), "BR25860591"
    seed = _grind(target)
    counts: list[int | None] = []
    for dataset in ("loans-2025", "loans-2025-refresh"):  # each its own row book, as the agent keys them
        s, parties = _session(tables, dataset)
        test = s.splits(seed=seed, test_fraction=0.2).test
        rows = test[1:] if dataset == "loans-2025" else test  # the coordinator's hope: test[0] is the target
        try:
            m = s.evaluate(rows)
            counts.append(round(m["default_rate"] * m["n"]))
        except PartyError as exc:
            assert "refusing" in str(exc)
            counts.append(None)
    assert counts[0] is None  # the bank's own test customers, or nothing
    shared = BankTests("bank")  # the agent's: one for all the bank's datasets
    answers = []
    for dataset, fraction in (("loans-2025", 0.2), ("loans-2025-refresh", 0.2 + 1.5 / 381)):
        s, parties = _session(tables, dataset, book=RowBook("bank", bank=shared, dataset=dataset))
        test = s.splits(seed=1, test_fraction=fraction).test
        try:
            answers.append(s.evaluate(test)["n"])
        except PartyError as exc:
            assert "another of this bank's datasets" in str(exc)
            answers.append(None)
    assert answers[0] and answers[1] is None, answers


def test_a_test_file_the_bank_cannot_honour_is_an_error_naming_it(tmp_path: Path) -> None:
    tables = _tables(600)
    s, earlier = _session(tables, "first", state=tmp_path / "state")  # the first run: seeded test rows, evaluated
    first = s.splits(seed=1, test_fraction=0.3)
    s.bank_only(first)
    ids = set(map(str, _aligned_ids(earlier, s)[first.test]))
    common = sorted(set(map(str, tables["bank"].ids)) & set(map(str, tables["payments"].ids)))
    path = tmp_path / "test_ids.csv"
    wanted = [i for i in common if i not in ids][:80]
    path.write_text("id\n" + "".join(f"{i}\n" for i in wanted))
    s2, parties = _session(tables, "second", test_ids=path, state=tmp_path / "state")  # the bank now names its own
    try:
        test = s2.splits(seed=1).test
    except PartyError as exc:
        assert "test_ids.csv" in str(exc)
        return
    assert set(map(str, _aligned_ids(parties, s2)[test])) == set(wanted), "the bank's test file was ignored"
