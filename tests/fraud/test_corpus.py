"""Per-bank corpora: counts, unique ids, determinism, non-IID banks, and global statistics near chance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sampan.fraud.capture import DEVICES
from sampan.fraud.corpus import DEFAULT_BANKS, PROVENANCE, BankProfile, bank_corpus
from sampan.fraud.documents import FraudDataError

SMALL = (64, 64)


def _bank(i: int = 0, size: tuple[int, int] = SMALL) -> BankProfile:
    return dataclasses.replace(DEFAULT_BANKS[i], size=size)


def test_counts_labels_ids_and_masks() -> None:
    docs = bank_corpus(_bank(), n_real=6, n_fake=9, seed=1)
    assert len(docs) == 15
    assert sum(d.label == 0 for d in docs) == 6 and sum(d.label == 1 for d in docs) == 9
    assert len({d.doc_id for d in docs}) == 15 and all(d.doc_id.startswith("bank_a-") for d in docs)
    for d in docs:
        assert d.image.shape == (*SMALL, 3) and d.image.dtype == np.uint8 and d.mask.shape == SMALL
        assert d.device == DEVICES["flagship_phone"].name
        assert (d.source == "real") == (d.label == 0)
        if d.label == 0:
            assert not d.mask.any()
        else:
            assert d.mask.any()


def test_same_seed_same_corpus() -> None:
    a = bank_corpus(_bank(2), 4, 4, seed=3)
    b = bank_corpus(_bank(2), 4, 4, seed=3)
    c = bank_corpus(_bank(2), 4, 4, seed=4)
    assert all(np.array_equal(x.image, y.image) and x.doc_id == y.doc_id for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True))


def test_default_banks_are_non_iid() -> None:
    assert 3 <= len(DEFAULT_BANKS) <= 5
    assert len({b.name for b in DEFAULT_BANKS}) == len(DEFAULT_BANKS)
    assert len({b.capture.name for b in DEFAULT_BANKS}) == len(DEFAULT_BANKS)
    assert len({tuple(sorted(b.kinds.items())) for b in DEFAULT_BANKS}) > 1
    assert len({tuple(sorted(b.sources.items())) for b in DEFAULT_BANKS}) > 1


def test_bad_profiles_are_refused_naming_the_field() -> None:
    with pytest.raises(FraudDataError, match="'kind'"):
        BankProfile("x", {"passport": 1.0}, {"autoencoder": 1.0}, DEVICES["webcam"])
    with pytest.raises(FraudDataError, match="'sources'"):
        BankProfile("x", {"id_card": 1.0}, {"stylegan": 1.0}, DEVICES["webcam"])
    with pytest.raises(FraudDataError, match="'kinds'"):
        BankProfile("x", {"id_card": 0.0}, {"upsampler": 1.0}, DEVICES["webcam"])
    with pytest.raises(FraudDataError, match="n_real"):
        bank_corpus(_bank(), -1, 2, seed=0)
    with pytest.raises(FraudDataError, match="'seed'"):
        bank_corpus(_bank(), 1, 1, seed=-5)


def test_provenance_states_what_is_real_and_fake() -> None:
    for word in ("procedural", "autoencoder", "untrained", "inpaint", "JPEG", "trained here", "proxies"):
        assert word in PROVENANCE


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(score)) + 1
    n1, n0 = int(y.sum()), int((1 - y).sum())
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _cv_logistic_auc(x: np.ndarray, y: np.ndarray, folds: int = 4) -> float:
    """Out-of-fold AUC of a logistic regression on standardised features (plain gradient descent)."""
    order = np.random.default_rng(0).permutation(len(y))
    scores = np.zeros(len(y))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        xt = (x[train] - mu) / sd
        w, b = np.zeros(x.shape[1]), 0.0
        for _ in range(500):
            p = 1 / (1 + np.exp(-(xt @ w + b)))
            w -= 0.1 * (xt.T @ (p - y[train]) / len(train) + 0.01 * w)
            b -= 0.1 * float(np.mean(p - y[train]))
        scores[test] = ((x[test] - mu) / sd) @ w + b
    return _auc(scores, y)


@pytest.mark.slow
@pytest.mark.parametrize("bank", [0, 1])
def test_global_colour_statistics_do_not_separate_real_from_fake(bank: int) -> None:
    """A mean/std-per-channel classifier must be near chance, so a detector has to use the fingerprints."""
    docs = bank_corpus(_bank(bank, (96, 96)), n_real=70, n_fake=70, seed=2026)
    x = np.array([np.concatenate([d.image.reshape(-1, 3).mean(0), d.image.reshape(-1, 3).std(0)]) for d in docs])
    y = np.array([d.label for d in docs], float)
    auc = _cv_logistic_auc(x, y)
    assert max(auc, 1 - auc) < 0.7
