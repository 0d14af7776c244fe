"""The built-in SME lending consortium: structure, determinism, and that its signal is learnable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import rankdata

from sampan.data import Consortium, PartyData, load_table, make_sme_consortium
from sampan.data.sme_population import SECTORS


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    return make_sme_consortium(12_000, seed=2024)


def auc(y: np.ndarray, score: np.ndarray) -> float:
    ranks = rankdata(score)
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> Callable[[np.ndarray], np.ndarray]:
    """Standardised L2 logistic regression by L-BFGS; returns a scoring function."""
    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd[sd == 0] = 1.0

    def design(A: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(A)), (A - mu) / sd])

    Z = design(X)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = Z @ w
        p = 1.0 / (1.0 + np.exp(-z))
        reg = np.r_[0.0, w[1:]]
        value = float(np.mean(np.logaddexp(0.0, z) - y * z) + l2 * reg @ reg)
        return value, Z.T @ (p - y) / len(y) + 2 * l2 * reg

    w = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B").x
    return lambda A: design(A) @ w


def holdout_auc(X: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    test = np.random.default_rng(seed).random(len(y)) < 0.4
    return auc(y[test], fit_logistic(X[~test], y[~test])(X[test]))


def join_on_ids(left: PartyData, right: PartyData) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the shared ids, in left's order (the test's god view, not PSI)."""
    pos = {k: i for i, k in enumerate(right.ids.tolist())}
    li = np.array([i for i, k in enumerate(left.ids.tolist()) if k in pos])
    ri = np.array([pos[k] for k in left.ids[li].tolist()])
    return li, ri


def test_generates_12k_rows() -> None:
    """12k SMEs (the default size; its timing lives in bench/, never here)."""
    consortium = make_sme_consortium(12_000, seed=1)
    assert sum(len(bank) for bank in consortium.horizontal.values()) > 0 and consortium.seed == 1


def test_same_seed_same_data_and_seed_recorded() -> None:
    a, b = make_sme_consortium(2_000, seed=5), make_sme_consortium(2_000, seed=5)
    for name in a.horizontal:
        np.testing.assert_array_equal(a.horizontal[name].X, b.horizontal[name].X)
        assert a.horizontal[name].ids.tolist() == b.horizontal[name].ids.tolist()
    c = make_sme_consortium(2_000, seed=6)
    assert c.vertical["bank"].ids.tolist() != a.vertical["bank"].ids.tolist()
    fresh = make_sme_consortium(2_000)
    again = make_sme_consortium(2_000, seed=fresh.seed)
    np.testing.assert_array_equal(fresh.vertical["payments"].X, again.vertical["payments"].X)


def test_rejects_tiny_population() -> None:
    with pytest.raises(ValueError):
        make_sme_consortium(10)


def test_ids_are_registration_numbers(consortium: Consortium) -> None:
    ids = np.concatenate([d.ids for d in consortium.horizontal.values()])
    assert ids.size == 12_000 and len(set(ids.tolist())) == 12_000
    assert all(len(i) == 10 and i.startswith("BR") and i[2:].isdigit() for i in ids.tolist())


def test_horizontal_banks_share_schema_but_not_customers(consortium: Consortium) -> None:
    banks = consortium.horizontal
    assert len(banks) == 3
    names = {tuple(d.feature_names) for d in banks.values()}
    assert len(names) == 1
    sector_cols = [f"sector={s}" for s in SECTORS]
    assert list(names.pop())[-len(SECTORS) :] == sector_cols
    id_sets = [set(d.ids.tolist()) for d in banks.values()]
    assert not (id_sets[0] & id_sets[1]) and not (id_sets[0] & id_sets[2]) and not (id_sets[1] & id_sets[2])
    sizes = sorted(len(d) for d in banks.values())
    assert sizes[0] < 0.7 * sizes[-1], "banks differ in size"
    # different customer mixes: the share of retail + F&B differs a lot between banks
    shares = []
    for d in banks.values():
        cols = [d.feature_names.index("sector=retail"), d.feature_names.index("sector=food_beverage")]
        shares.append(d.X[:, cols].sum(axis=1).mean())
    assert max(shares) - min(shares) > 0.3
    for d in banks.values():
        assert d.y is not None and d.X.dtype == np.float64 and d.X.flags.c_contiguous


def test_default_rate_is_realistic(consortium: Consortium) -> None:
    y = np.concatenate([d.y for d in consortium.horizontal.values() if d.y is not None])
    assert 0.04 <= y.mean() <= 0.08
    assert consortium.vertical["bank"].y is not None
    assert 0.04 <= consortium.vertical["bank"].y.mean() <= 0.08
    assert "intercept" in consortium.true_coefficients
    assert consortium.true_coefficients["latent:trading_momentum"] < 0


def test_vertical_parties_overlap_partially(consortium: Consortium) -> None:
    v = consortium.vertical
    assert set(v) == {"bank", "payments", "delivery"}
    assert v["payments"].y is None and v["delivery"].y is None
    bank = set(v["bank"].ids.tolist())
    for name, (lo, hi) in {"payments": (0.6, 0.8), "delivery": (0.3, 0.5)}.items():
        ids = set(v[name].ids.tolist())
        covered = len(ids & bank) / len(bank)
        assert lo < covered < hi, (name, covered)
        assert ids - bank, f"{name} also has SMEs the bank does not"
    # delivery is mostly F&B and retail merchants: check via the bank's sector columns
    li, _ = join_on_ids(v["bank"], v["delivery"])
    names = v["bank"].feature_names
    cols = [names.index("sector=retail"), names.index("sector=food_beverage")]
    fnb_retail = v["bank"].X[li][:, cols].sum(axis=1)
    assert fnb_retail.mean() > 0.7
    # each party has its own row order
    li, ri = join_on_ids(v["bank"], v["payments"])
    assert not np.array_equal(li, ri)


def test_schema_for_and_feature_names(consortium: Consortium) -> None:
    for view in (consortium.horizontal, consortium.vertical):
        for name, data in view.items():
            assert consortium.schema_for(name).feature_names() == data.feature_names
    assert consortium.schema_for("payments").label_column is None
    assert all(n.startswith("pay_") for n in consortium.vertical["payments"].feature_names)
    assert all(n.startswith("dlv_") for n in consortium.vertical["delivery"].feature_names)
    with pytest.raises(KeyError):
        consortium.schema_for("nobody")


def test_write_csv_round_trips_through_load_table(consortium: Consortium, tmp_path: Path) -> None:
    paths = consortium.write_csv(tmp_path)
    assert set(paths) == set(consortium.horizontal)
    for name, path in paths.items():
        loaded = load_table(path, consortium.schema_for(name), name)
        original = consortium.horizontal[name]
        assert loaded.ids.tolist() == original.ids.tolist()
        np.testing.assert_array_equal(loaded.X, original.X)
        np.testing.assert_array_equal(loaded.y, original.y)  # type: ignore[arg-type]
    header = paths["bank_harbour"].read_text().splitlines()[0]
    assert '"sector"' in header and "sector=" not in header
    vertical = consortium.write_csv(tmp_path / "v", view="vertical")
    loaded = load_table(vertical["delivery"], consortium.schema_for("delivery"), "delivery")
    np.testing.assert_array_equal(loaded.X, consortium.vertical["delivery"].X)


def test_describe_names_parties_and_rates(consortium: Consortium) -> None:
    text = consortium.describe()
    for name in (*consortium.horizontal, *consortium.vertical):
        assert name in text
    assert "default rate" in text and str(consortium.seed) in text


def test_pooled_bank_data_is_learnable(consortium: Consortium) -> None:
    X = np.vstack([d.X for d in consortium.horizontal.values()])
    y = np.concatenate([d.y for d in consortium.horizontal.values() if d.y is not None]).astype(float)
    assert holdout_auc(X, y) > 0.72


@pytest.mark.parametrize("partner", ["payments", "delivery"])
def test_partner_features_beat_bank_only_on_the_overlap(consortium: Consortium, partner: str) -> None:
    bank, other = consortium.vertical["bank"], consortium.vertical[partner]
    li, ri = join_on_ids(bank, other)
    assert bank.y is not None
    y = bank.y[li].astype(float)
    bank_only = holdout_auc(bank.X[li], y)
    joint = holdout_auc(np.hstack([bank.X[li], other.X[ri]]), y)
    assert joint > bank_only + 0.02, (bank_only, joint)
