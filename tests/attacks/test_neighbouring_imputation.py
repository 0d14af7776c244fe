"""Neighbouring-dataset differential test for the imputation release under DP (issue 13 item 1).

The horizontal differential harness (`test_neighbouring_horizontal`: every noise source fixed, every message each
role sees captured and looked up in the catalogue) runs a DP configuration whose [schema] imputes two columns with
median and mean, on banks whose training rows have missing cells; D+1 adds one extreme training row at bank_0.
Every field that differs must be the output of a charged mechanism: the `impute_stats` reply by its own DP1
imputation charge (one per party, at the noise the request carried), the fill values every later request carries
(``arrays.impute``) as derived from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_neighbouring_horizontal as harness

from sampan.data import PartyData, TableSchema
from sampan.data.missing import missing_columns
from sampan.horizontal.simulation import PartySplit

NAME, PLAIN = "dp2-impute", "impute-without-dp"
SCHEMA = TableSchema(id="id", label="y", features=[
    {"name": "x1", "impute": "median", "bounds": [-4, 4]}, {"name": "x2", "impute": "mean", "bounds": [-4, 4]},
    "x3", "x4"])
CONFIG = {"schema": SCHEMA.to_dict(),
          "privacy": {"epsilon": 50.0, "dp1": harness.DP1, "dp2": {"noise_multiplier": 1.0},
                      "impute_noise_multiplier": 3.0}}
# without DP, and a median without bounds (its range from each party's exact min/max): every field revealed
PLAIN_CONFIG = {"schema": {**SCHEMA.to_dict(), "features": [{"name": "x1", "impute": "median"},
                                                             *SCHEMA.to_dict()["features"][1:]]}}
# the schema each bank loads its table with (a bank checks every request against its own schema: R13-IMP-1/3)
PARTY_SCHEMA = {"schema": SCHEMA}


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, 4))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ np.array([1.5, -1.0, 0.5, 0.0]) - 0.5)))).astype(np.int8)
    X[rng.random(n) < 0.2, 0] = np.nan
    X[rng.random(n) < 0.2, 1] = np.nan
    return PartyData(name, np.array([f"{name}-{i}" for i in range(n)], dtype=object), X, y,
                     SCHEMA.feature_names(), missing_columns(PARTY_SCHEMA["schema"]))


def _splits(neighbour: bool) -> dict[str, PartySplit]:
    rng = np.random.default_rng(11)
    splits = {name: PartySplit(_data(name, 80 + 20 * i, rng), _data(name, 40, rng))
              for i, name in enumerate(harness.PARTIES)}
    if neighbour:  # D + one record: an extreme, mislabelled row at bank_0, present in both imputed columns
        t = splits["bank_0"].train
        extra = PartyData("bank_0", np.append(t.ids, "bank_0-extra"), np.vstack([t.X, [[3.5, -3.5, 3.5, 3.5]]]),
                          np.append(t.y, np.int8(0)), t.feature_names, t.missing_columns)
        splits["bank_0"] = PartySplit(extra, splits["bank_0"].test)
    return splits


def _requested_z(tag: str, meta: dict[str, Any]) -> float | None:
    if tag == "DP1:impute":
        try:
            return float(meta["dp"]["noise_multiplier"])
        except (KeyError, TypeError):
            return None
    return ORIGINAL_Z(tag, meta)


ORIGINAL_Z = harness._requested_z


@pytest.fixture
def imputing_harness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(harness.CONFIGS, NAME, CONFIG)
    monkeypatch.setitem(harness.TRUSTED, NAME, set())
    monkeypatch.setitem(harness.CONFIGS, PLAIN, PLAIN_CONFIG)
    monkeypatch.setitem(harness.TRUSTED, PLAIN, {"coordinator", "every party"})  # no DP: declared revealed
    monkeypatch.setitem(harness.TAGS, "DP1:impute", ("DP1", "imputation statistics"))
    monkeypatch.setitem(harness._RELEASED_BY, "impute_stats", ("DP1:impute",))
    monkeypatch.setattr(harness, "_requested_z", _requested_z)
    monkeypatch.setattr(harness, "_splits", _splits)


@pytest.mark.usefixtures("imputing_harness")
def test_the_imputation_release_differs_only_through_its_charge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    d, _ = harness._transcript(tmp_path, monkeypatch, NAME, neighbour=False)
    d1, ledger1 = harness._transcript(tmp_path, monkeypatch, NAME, neighbour=True)
    changed = harness.differential_check(NAME, d, d1, ledger1)
    assert {"party:impute_stats arrays.hist", "party:impute_stats arrays.count"} <= changed["charged"]
    assert "coordinator:fit arrays.impute" in changed["derived"]
    assert "visible" not in changed and "aggregate" not in changed
    assert ledger1 is not None
    charges = [e for e in ledger1.events if "imputation statistics" in e.note]
    assert sorted(e.party for e in charges) == sorted(harness.PARTIES)
    assert all(e.noise_multiplier == 3.0 for e in charges)


@pytest.mark.usefixtures("imputing_harness")
def test_without_dp_every_imputation_field_is_declared_revealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setitem(PARTY_SCHEMA, "schema", TableSchema(id="id", label="y",
                                                           features=PLAIN_CONFIG["schema"]["features"]))
    d, _ = harness._transcript(tmp_path, monkeypatch, PLAIN, neighbour=False)
    d1, _ = harness._transcript(tmp_path, monkeypatch, PLAIN, neighbour=True)
    changed = harness.differential_check(PLAIN, d, d1, None)  # every field declared; changed ones visible
    assert {"party:impute_stats arrays.hist", "party:impute_stats arrays.high",
            "coordinator:fit arrays.impute"} <= changed["visible"]


@pytest.mark.usefixtures("imputing_harness")
def test_an_uncharged_imputation_release_fails_the_check() -> None:
    """The checker itself: a changed imputation histogram with no DP1 imputation charge in the ledger is caught."""
    key = ("party:impute_stats", "bank_0", 0)
    a = [(key, "party:impute_stats", "bank_0", {"arrays.hist": np.zeros(2)}, [("bank_0", 0, {"dp": {}})])]
    b = [(key, "party:impute_stats", "bank_0", {"arrays.hist": np.ones(2)}, [("bank_0", 0, {"dp": {}})])]
    with pytest.raises(AssertionError, match="arrays.hist.*no charge"):
        harness.differential_check(NAME, a, b, None)
