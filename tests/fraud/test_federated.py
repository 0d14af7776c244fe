"""Federated training of the patch model (issue 18, item 3): a normal horizontal run, banks' rows in their own folders,
DP charged to the ledger with the patch/document unit stated, clear errors, and a detector that beats chance on
held-out documents."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import numpy as np
import pytest

from sampan.fraud.bank_tables import BankData, BankDataError
from sampan.fraud.federated import (
    DpSettings,
    TrainSettings,
    document_privacy,
    public_bounds,
    train_central,
    train_federated,
    train_local_only,
)
from sampan.metrics.classification import roc_auc
from sampan.privacy import Ledger
from sampan.runtime.runner import resume_run
from sampan.runtime.store import Store

F = 10


def _bank(name: str, rng: np.random.Generator, docs: int = 24, per_doc: int = 8, shift: float = 0.0) -> BankData:
    """Synthetic patch rows: fake documents move the first three features (a document-level offset shared by its
    patches, as a generator's trace is), each bank has its own covariate shift (non-IID)."""
    X, y, ids = [], [], []
    for d in range(docs):
        label = d % 2
        offset = rng.normal(scale=0.3, size=F) + shift
        rows = rng.normal(size=(per_doc, F)) + offset
        rows[:, :3] += 0.9 * label
        X.append(rows * 4.0 + 10.0)  # raw scale far from standard: the run must standardise
        y += [label] * per_doc
        ids += [f"{name}-doc{d:03d}"] * per_doc
    return BankData(name, np.vstack(X), np.array(y), np.array(ids), origin=f"/banks/{name}")


@pytest.fixture
def banks() -> list[BankData]:
    rng = np.random.default_rng(11)
    return [_bank("bank_a", rng), _bank("bank_b", rng, shift=0.4), _bank("bank_c", rng, docs=16, shift=-0.3)]


def _document_auc(model, bank: BankData) -> float:  # type: ignore[no-untyped-def]
    """Image-level AUC: each document's mean patch fake probability."""
    p = model.fake_probability(bank.features)
    docs = sorted(set(bank.doc_ids.tolist()))
    scores = [p[bank.doc_ids == d].mean() for d in docs]
    labels = [int(bank.labels[bank.doc_ids == d][0]) for d in docs]
    return float(roc_auc(np.array(labels), np.array(scores)))


def test_a_federated_run_is_a_stored_run_whose_model_beats_chance_on_new_documents(
        tmp_path: Path, banks: list[BankData]) -> None:
    settings = TrainSettings(rounds=4, max_patches_per_doc=6)
    seen: list[str] = []
    result = train_federated(banks, settings=settings, store_path=tmp_path / "runs.db", work_dir=tmp_path / "work",
                             seed=5, progress=lambda stage, info: seen.append(stage))
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    run = store.get_run(str(result.run_id))
    assert run.status == "completed" and run.workflow == "horizontal"
    registered = store.get_model(str(result.model_name), result.model_version)
    assert registered.run_id == result.run_id and registered.receipt is not None
    assert "k = 6" not in registered.receipt["unit_of_privacy"]  # no DP: no DP claim, but the cap is stated
    assert registered.receipt["max_patches_per_doc"] == 6
    assert [r["round"] for r in result.rounds] == [1, 2, 3, 4] and "round" in seen
    assert result.final_metrics["auc"] > 0.6  # the run's own holdout: documents none of its patches trained on
    held_out = _bank("bank_new", np.random.default_rng(99), docs=40)
    assert _document_auc(result.model, held_out) > 0.75
    assert result.model.n_features == F


def test_each_banks_rows_stay_in_its_own_private_folder_and_no_pooled_file_exists(
        tmp_path: Path, banks: list[BankData]) -> None:
    work = tmp_path / "work"
    result = train_federated(banks, settings=TrainSettings(rounds=1, max_patches_per_doc=3),
                             store_path=tmp_path / "runs.db", work_dir=work, seed=1)
    assert sorted(p.name for p in work.iterdir()) == ["bank_a", "bank_b", "bank_c", "reports"]
    for bank in banks:
        folder = work / bank.name
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = sorted(folder.iterdir())
        assert [f.name.split("-")[1] for f in files] == ["holdout", "train"] and len(files) == 2
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            ids = {line.split(",", 1)[0].split("#")[0] for line in path.read_text().splitlines()[1:]}
            assert ids and all(i.startswith(bank.name + "-") for i in ids)  # only this bank's documents
        train_rows = [line.split("#")[0] for line in files[1].read_text().splitlines()[1:]]
        held_docs = {line.split("#")[0] for line in files[0].read_text().splitlines()[1:]}
        assert not set(train_rows) & held_docs  # split by document: no document on both sides
        table = result.tables[bank.name]
        per_doc = np.unique(train_rows, return_counts=True)[1]
        assert per_doc.max() <= 3 and table.dropped_rows > 0  # the cap k = 3 holds for training rows


@pytest.mark.slow
def test_a_dp_run_charges_every_bank_and_its_receipt_states_the_patch_unit(
        tmp_path: Path, banks: list[BankData]) -> None:
    public = _bank("public_reference", np.random.default_rng(2026))  # stands for the public reference corpus
    dp = DpSettings(epsilon=4.0, bounds=public_bounds(public.features))
    result = train_federated(banks, settings=TrainSettings(rounds=3, max_patches_per_doc=4), dp=dp,
                             store_path=tmp_path / "runs.db", work_dir=tmp_path / "work", seed=2)
    assert result.privacy is not None
    for name in ("bank_a", "bank_b", "bank_c"):
        spent = result.privacy["parties"][name]
        assert 0 < spent["epsilon_spent"] <= 4.0 and spent["epsilon_by_level"]["DP2"] > 0
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    receipt = store.get_model(str(result.model_name), result.model_version).receipt
    assert receipt is not None and receipt["differential_privacy"] is True
    assert "one record = one image patch" in receipt["unit_of_privacy"]
    assert "k = 4" in receipt["unit_of_privacy"] and "group privacy" in receipt["unit_of_privacy"]
    assert "epsilon 16" in result.privacy_unit  # k * epsilon: what a whole document gets, at most


def test_a_crashed_dp_run_resumes_without_charging_twice(tmp_path: Path, banks: list[BankData]) -> None:
    class Crash(Exception):
        pass

    def crash_after_round_2(stage: str, info: object) -> None:
        if stage == "round" and info["round"] == 2:  # type: ignore[index]
            raise Crash()

    public = _bank("public_reference", np.random.default_rng(2026))
    dp = DpSettings(epsilon=30.0, bounds=public_bounds(public.features), noise_multiplier=2.0)  # 4 rounds fit
    with pytest.raises(Crash):
        train_federated(banks, settings=TrainSettings(rounds=4), dp=dp, store_path=tmp_path / "runs.db",
                        work_dir=tmp_path / "work", seed=3, progress=crash_after_round_2)
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = store.list_runs()[0].run_id
    assert store.get_run(run_id).status == "failed"
    at_crash = Ledger.from_json(store.latest_checkpoint(run_id).meta["ledger"])
    finished = resume_run(store, run_id)
    checkpoint = store.latest_checkpoint(finished.run_id)
    ledger = Ledger.from_json(checkpoint.meta["ledger"])
    assert store.get_run(run_id).status == "completed"
    for party in ledger.parties:
        before = [e.step for e in at_crash.events if e.party == party and e.level == "DP2"]
        steps = [e.step for e in ledger.events if e.party == party and e.level == "DP2"]
        assert before == [1, 2] and steps[:2] == before  # rounds 1-2 charged once, before the crash
        assert steps == [1, 2, 3, 4]  # then one release for each later round


def test_baselines_train_the_same_model_on_the_same_capped_rows(banks: list[BankData]) -> None:
    settings = TrainSettings(rounds=3, max_patches_per_doc=6)
    held_out = _bank("bank_new", np.random.default_rng(7), docs=40)
    central = train_central(banks, settings=settings, seed=4)
    alone = train_local_only(banks[2], settings=settings, seed=4)
    assert central.run_id is None and "pooled" in central.privacy_unit
    assert alone.banks == ("bank_c",)
    assert _document_auc(central.model, held_out) > 0.75
    assert 0.0 <= float(alone.model.fake_probability(held_out.features[:5]).max()) <= 1.0
    mlp = train_central(banks, settings=dataclasses.replace(settings, model="mlp", hidden=(8,)), seed=4)
    assert mlp.model.to_dict()["kind"] == "mlp"


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: dataclasses.replace(b, labels=np.zeros_like(b.labels)), "bank 'bank_b' (/banks/bank_b): no fake"),
    (lambda b: dataclasses.replace(b, labels=np.ones_like(b.labels)), "bank 'bank_b' (/banks/bank_b): no real"),
    (lambda b: dataclasses.replace(b, features=b.features[:, :4]), "feature count"),
    (lambda b: dataclasses.replace(b, features=np.empty((0, F)), labels=np.empty(0), doc_ids=np.empty(0)),
     "bank 'bank_b' (/banks/bank_b): no patches"),
])
def test_bad_bank_data_is_refused_naming_the_bank_and_its_folder(tmp_path: Path, banks: list[BankData], change,
                                                                   message: str) -> None:  # type: ignore[no-untyped-def]
    bad = [banks[0], change(banks[1]), banks[2]]
    with pytest.raises(BankDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_federated(bad, store_path=tmp_path / "runs.db", work_dir=tmp_path / "work", seed=1)
    assert not (tmp_path / "work").exists() and not (tmp_path / "runs.db").exists()  # refused before writing


def test_the_document_guarantee_is_group_privacy_over_k_rows() -> None:
    dp = DpSettings(epsilon=1.0, bounds={"*": (-1.0, 1.0)})
    text = document_privacy(dp, 16)
    assert "epsilon 16" in text and "not document-level DP" in text and "no meaningful guarantee" in text
    assert "no differential privacy" in document_privacy(None, 16)


@pytest.mark.slow
def test_on_generated_documents_the_federated_model_beats_chance_on_held_out_documents(tmp_path: Path) -> None:
    """Three non-IID banks of locally generated documents (96 px, one seeded corpus): the run's holdout is documents
    no patch of which was trained on; new documents of the same banks are scored image by image."""
    from sampan.fraud.aggregate import image_score
    from sampan.fraud.bank_images import bank_from_docs
    from sampan.fraud.corpus import DEFAULT_BANKS, bank_corpus
    from sampan.fraud.fingerprint import image_features
    from sampan.fraud.slicer import SlicerConfig

    profiles = [dataclasses.replace(p, size=(96, 96)) for p in DEFAULT_BANKS[:3]]
    banks = [bank_from_docs(p.name, bank_corpus(p, 8, 8, seed=1), SlicerConfig())[0] for p in profiles]
    result = train_federated(banks, settings=TrainSettings(rounds=5), store_path=tmp_path / "runs.db",
                             work_dir=tmp_path / "work", seed=1)
    new = [d for p in profiles for d in bank_corpus(p, 5, 5, seed=501)]
    scores = [image_score(1.0 - result.model.fake_probability(image_features(d.image)[0])) for d in new]
    labels = np.array([d.label for d in new])
    auc = roc_auc(labels, 1.0 - np.array(scores))
    print(f"run holdout AUC {result.final_metrics['auc']:.3f}, image AUC on new documents {auc:.3f}")
    assert result.final_metrics["auc"] > 0.6 and auc > 0.55


def test_a_curious_coordinator_finds_no_patch_row_in_its_whole_store(tmp_path: Path, banks: list[BankData]) -> None:
    """The coordinator keeps the run store (config, events, checkpoints, model, receipt): it reads every byte of it
    and looks for the banks' patch features, as text and as float64 bytes. Only the banks' own folders hold them."""
    import sqlite3
    import struct

    train_federated(banks, settings=TrainSettings(rounds=2), store_path=tmp_path / "runs.db",
                    work_dir=tmp_path / "work", seed=6)
    dump = bytearray()
    with sqlite3.connect(tmp_path / "runs.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    dump += value if isinstance(value, bytes) else str(value).encode()
    rng = np.random.default_rng(0)
    for bank in banks:
        values = bank.features.ravel()[rng.choice(bank.features.size, 40, replace=False)]
        for v in values.tolist():
            assert repr(v).encode() not in dump and struct.pack("<d", v) not in dump
    folder = tmp_path / "work" / "bank_a"  # control: the same search finds them in the bank's own files (no row is
    own = b"".join(p.read_bytes() for p in folder.iterdir())  # over the cap)
    assert repr(float(banks[0].features[0, 0])).encode() in own
