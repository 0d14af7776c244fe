"""Neighbouring-dataset differential test for DP synthetic data (`synth fit`, federated plain and SecAgg).

Fit on D and on D' = D plus one record with every noise source fixed (the secure generators used by
synth are replaced by one seeded stream per run). Then couple the two runs the way a DP proof does:
every charged release on D' returns exactly what the same release returned on D, after checking that
it is the same release (same shape, same noise) and that its true input moved by at most the
sensitivity it was charged at. If the model folder and the releasable report are then byte-identical,
every byte through which the extra record could reach them passes through a charged mechanism; any
path around the ledger (a count, a bound, a category, a statistic read off the records) shows up as a
difference. The uncoupled runs must differ, so the test is able to see the record at all.

A record with a value no other record has adds one noisy count to a DP set union (the released
categories of an undeclared column). There the coupling is the one of the set-union proof: the shared
values get the noisy counts they had on D, and the new value's fresh noisy count must fall below the
threshold (the event of probability 1 - delta_c that the receipt's ``threshold_delta`` pays for).

Unit of privacy: one record (row) of one party; evaluation rows are not inside the DP unit: the
confidential report is computed on them exactly and is for the data owner only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import sampan.synth.aggregate as aggregate_mod
import sampan.synth.domain as domain_mod
import sampan.synth.fit as fit_mod
import sampan.synth.measure as measure_mod
from sampan.cli.synth import synth_app
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.randomness import seeded_generator
from sampan.synth import SynthConfig, SynthModel, fit_federated, fit_synthesizer, generate
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.evaluate import evaluate
from sampan.synth.report import write_evaluation
from sampan.synth.select import em_spanning_tree
from sampan.transport.inprocess import InProcessTransport

SCHEMA = SME_SYNTH_SCHEMA


class Coupler:
    """Records each charged release of the run on D; replays it in the run on D' (see the module doc)."""

    def __init__(self) -> None:
        self.mode = "off"
        self.gaussian: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        self.selections: list[tuple[dict[Any, float], list[Any]]] = []
        self.gaussian_shift = 0.0
        self.score_shift = 0.0
        self.new_values: list[float] = []  # noisy counts of values only D' holds (set-union releases)
        self._g = self._s = 0
        self._seed = itertools.count()

    def start(self, mode: str) -> None:
        self.mode, self._g, self._s, self._seed = mode, 0, 0, itertools.count()
        self.new_values = []

    def generator(self) -> np.random.Generator:
        """The fixed noise: the n-th generator synth asks for is seeded with n, in every run."""
        return seeded_generator(1000 + next(self._seed))

    def release(self, counts: np.ndarray, noisy: Any, sensitivity: float, sigma: float) -> Any:
        if self.mode == "record":
            self.gaussian.append((np.array(counts, dtype=float), np.array(noisy), sensitivity, sigma))
        elif self.mode == "replay":
            old_counts, old_noisy, old_sens, old_sigma = self.gaussian[self._g]
            self._g += 1
            assert (old_sens, old_sigma) == (sensitivity, sigma), \
                "D and D' made different releases: the plan itself depends on the record"
            if np.ndim(counts) == 1 and np.size(counts) == old_counts.size + 1:
                return self._set_union(old_counts, old_noisy, np.asarray(counts, float), np.asarray(noisy))
            assert old_counts.shape == np.shape(counts), \
                "D and D' made different releases: the plan itself depends on the record"
            shift = float(np.linalg.norm(np.asarray(counts, float) - old_counts))
            assert shift <= sensitivity + 1e-9, f"a release moved by {shift} > its charged sensitivity {sensitivity}"
            self.gaussian_shift = max(self.gaussian_shift, shift)
            return old_noisy.copy()
        return noisy

    def _set_union(self, old_counts: np.ndarray, old_noisy: np.ndarray, counts: np.ndarray,
                   noisy: np.ndarray) -> np.ndarray:
        """Counts of the values present, one more on D' (a value only the extra record holds): the shared
        values keep their noisy counts from D; the new one keeps its own draw, checked by the caller
        against the released threshold. Which coordinate is new must be unambiguous."""
        new = [j for j in range(counts.size) if counts[j] == 1 and np.array_equal(np.delete(counts, j), old_counts)]
        assert len(new) == 1, "a release grew by a cell, but not by one new value held by one record"
        self.gaussian_shift = max(self.gaussian_shift, 1.0)
        self.new_values.append(float(noisy[new[0]]))
        return np.insert(old_noisy, new[0], noisy[new[0]])

    def select(self, scores: dict[Any, float], chosen: list[Any]) -> list[Any]:
        if self.mode == "record":
            self.selections.append((dict(scores), list(chosen)))
        elif self.mode == "replay":
            old_scores, old_chosen = self.selections[self._s]
            self._s += 1
            assert set(old_scores) == set(scores)
            self.score_shift = max(self.score_shift, max(abs(scores[k] - old_scores[k]) for k in scores))
            return list(old_chosen)
        return chosen


@pytest.fixture
def coupler(monkeypatch) -> Coupler:
    c = Coupler()

    class CoupledGaussian(GaussianMechanism):
        def release(self, value, rng=None):  # type: ignore[override]
            return c.release(np.asarray(value), super().release(value, rng), self.sensitivity, self.sigma)

    def coupled_tree(names, scores, epsilon, rng):  # type: ignore[no-untyped-def]
        return c.select(scores, em_spanning_tree(names, scores, epsilon, rng))

    for module in (measure_mod, domain_mod, fit_mod):
        monkeypatch.setattr(module, "secure_generator", c.generator)
    monkeypatch.setattr(measure_mod, "GaussianMechanism", CoupledGaussian)
    monkeypatch.setattr(domain_mod, "GaussianMechanism", CoupledGaussian)
    monkeypatch.setattr(measure_mod, "em_spanning_tree", coupled_tree)
    return c


def _plus_one(table: dict[str, np.ndarray], row: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.append(v, np.asarray([row[k]], dtype=v.dtype)) for k, v in table.items()}


EXTRA = {"default_12m": "1", "log10_annual_revenue_hkd": 9.4, "years_in_business": 59.0, "employees": 99.0,
         "log10_loan_amount_hkd": 8.4, "loan_term_months": 120.0, "debt_to_revenue": 4.9,
         "credit_utilisation": 1.0, "past_delinquencies": 24.0, "has_guarantee": "true", "sector": "trading"}


def _model_view(model: SynthModel, folder: Path) -> tuple[str, dict[str, np.ndarray]]:
    """What a reader of the model folder sees (timing aside): model.json text and every array."""
    model.info["seconds_fit"] = 0.0
    model.save(folder)
    with np.load(folder / "tables.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return (folder / "model.json").read_text(), arrays


def _assert_same(a: tuple[str, dict[str, np.ndarray]], b: tuple[str, dict[str, np.ndarray]]) -> None:
    ja, jb = json.loads(a[0]), json.loads(b[0])
    diff = sorted(k for k in set(ja) | set(jb) if ja.get(k) != jb.get(k))
    assert not diff, f"model.json fields differ outside charged releases: {diff}"
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys()
    for key in a[1]:
        assert a[1][key].dtype == b[1][key].dtype and np.array_equal(a[1][key], b[1][key]), f"array '{key}' differs"


def _differs(a: tuple[str, dict[str, np.ndarray]], b: tuple[str, dict[str, np.ndarray]]) -> bool:
    return a[0] != b[0] or any(not np.array_equal(a[1][k], b[1].get(k, np.empty(0))) for k in a[1])


def _run_pair(coupler: Coupler, fit: Callable[[bool], SynthModel], tmp_path: Path) -> None:
    """Uncoupled (fixed noise only): D and D' differ. Coupled: identical, within charged sensitivities."""
    coupler.start("off")
    plain_d = _model_view(fit(False), tmp_path / "d")
    coupler.start("off")
    plain_d1 = _model_view(fit(True), tmp_path / "d1")
    assert _differs(plain_d, plain_d1), "the extra record never reached the model: the test would see nothing"
    coupler.start("record")
    model_d = fit(False)
    coupler.start("replay")
    model_d1 = fit(True)
    assert coupler._g == len(coupler.gaussian) and coupler._s == len(coupler.selections)
    _assert_same(_model_view(model_d, tmp_path / "cd"), _model_view(model_d1, tmp_path / "cd1"))
    declared = {r.get("score_sensitivity") for p in model_d.receipt["parties"].values() for r in p["releases"]
                if r["kind"] == "exponential"}
    if declared:
        assert coupler.score_shift <= min(declared) + 1e-9
    assert 0 < coupler.gaussian_shift


@pytest.fixture(scope="module")
def banks() -> dict[str, dict[str, np.ndarray]]:
    return consortium_tables(3600, seed=11)


def test_synth_fit_on_a_neighbour_differs_only_through_charged_releases(coupler, banks, tmp_path) -> None:
    table = banks["bank_harbour"]
    config = SynthConfig(epsilon=2.0, tree=True)
    _run_pair(coupler, lambda plus: fit_synthesizer(_plus_one(table, EXTRA) if plus else table, SCHEMA, config),
              tmp_path)


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secagg"])
def test_federated_synthesis_on_a_neighbour_differs_only_through_charged_releases(coupler, banks, tmp_path,
                                                                                  secure, monkeypatch) -> None:
    """Each bank's view is its own data plus the public model; the coordinator's decrypted view is the
    sums (SecAgg) or every bank's noisy release (plain) and the banks' EM-chosen trees: all compared."""
    config = SynthConfig(epsilon=2.0, tree=True)
    seen: list[list[np.ndarray]] = []  # the coordinator's decrypted view: every sum it obtains, per run
    real_sum = aggregate_mod.SecureSum.__call__ if secure else aggregate_mod.PlainSum.__call__

    def recording_sum(self, releases):  # type: ignore[no-untyped-def]
        total = real_sum(self, releases)
        seen[-1].append(np.array(total))
        return total

    monkeypatch.setattr(aggregate_mod.SecureSum if secure else aggregate_mod.PlainSum, "__call__", recording_sum)

    def fit(plus: bool) -> SynthModel:
        seen.append([])
        tables = dict(banks)
        if plus:
            tables["bank_harbour"] = _plus_one(tables["bank_harbour"], EXTRA)
        return fit_federated(tables, SCHEMA, config, transport=InProcessTransport, secure_aggregation=secure)

    _run_pair(coupler, fit, tmp_path)
    coupled_d, coupled_d1 = seen[2], seen[3]  # runs: uncoupled D, D', then coupled D, D'
    assert len(coupled_d) == len(coupled_d1) > 0
    assert all(np.array_equal(a, b) for a, b in zip(coupled_d, coupled_d1, strict=False))


def _csv(path: Path, table: dict[str, np.ndarray], spreadsheet_booleans: bool = False) -> Path:
    """The table as CSV text, with '?' missing markers in one numeric column (as in the public bankruptcy
    data); ``spreadsheet_booleans``: write 'true'/'false' as TRUE/FALSE (as pandas and spreadsheets do)."""
    names = SCHEMA.names
    lines = [",".join(names)]
    for i in range(len(table["sector"])):
        cells = [str(table[n][i]) if SCHEMA.column(n).kind == "categorical" else repr(float(table[n][i]))
                 for n in names]
        if spreadsheet_booleans:
            cells = [{"true": "TRUE", "false": "FALSE"}.get(c, c) for c in cells]
        if i % 17 == 3:
            cells[names.index("debt_to_revenue")] = "?"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_synth_fit_cli_without_a_schema_releases_the_same_domain_on_a_neighbour(coupler, banks, tmp_path) -> None:
    """The DP-released schema (kinds, bounds, categories) changes with the extra record only through its
    charged releases: an out-of-range value in the extra record does not move the public bounds."""
    table = banks["bank_harbour"]
    extreme = dict(EXTRA, debt_to_revenue=4321.0, employees=99.0)
    data_d, data_d1 = _csv(tmp_path / "d.csv", table), _csv(tmp_path / "d1.csv", _plus_one(table, extreme))
    runner = CliRunner()

    def fit(plus: bool) -> SynthModel:
        out = tmp_path / ("m1" if plus else "m0")
        result = runner.invoke(synth_app, ["fit", "--data", str(data_d1 if plus else data_d), "--epsilon", "4",
                                           "--out", str(out), "--label", "default_12m", "--categories",
                                           "default_12m=0,1", "--drop-incomplete-rows"])
        assert result.exit_code == 0, result.output
        return SynthModel.load(out)

    _run_pair(coupler, fit, tmp_path)
    schema = SynthModel.load(tmp_path / "m1").schema
    assert schema.domain_source == "dp" and schema.column("debt_to_revenue").kind == "numeric"
    assert schema.column("debt_to_revenue").bounds[1] < 4321.0  # type: ignore[index]


def _fit_cli(data: Path, out: Path) -> SynthModel:
    result = CliRunner().invoke(synth_app, ["fit", "--data", str(data), "--epsilon", "4", "--out", str(out),
                                            "--label", "default_12m", "--categories", "default_12m=0,1",
                                            "--drop-incomplete-rows"])
    assert result.exit_code == 0, result.output
    return SynthModel.load(out)


def test_a_neighbour_with_new_category_values_is_hidden_by_the_threshold(coupler, banks, tmp_path) -> None:
    """D' adds one record whose sector and guarantee values no other record has (the guarantee column is
    written TRUE/FALSE, so its new text value 'unknown' would also flip a whole-file type inference). The
    set-union coupling of the module doc: the new values' noisy counts stay below the threshold, and then
    the model folder is byte-identical; in particular the receipt does not count the distinct values of a
    column, and no other cell is read differently because of the extra record."""
    table = banks["bank_harbour"]
    newcomer = dict(EXTRA, sector="zz-salt-works", has_guarantee="unknown")
    data_d = _csv(tmp_path / "d.csv", table, spreadsheet_booleans=True)
    data_d1 = _csv(tmp_path / "d1.csv", _plus_one(table, newcomer), spreadsheet_booleans=True)
    _run_pair(coupler, lambda plus: _fit_cli(data_d1 if plus else data_d, tmp_path / ("m1" if plus else "m0")),
              tmp_path)
    assert len(coupler.new_values) == 2, "the extra record's values were not new in two category releases"
    receipt = SynthModel.load(tmp_path / "m1").receipt["parties"]["data_owner"]["releases"]
    thresholds = [r["threshold"] for column in ("has_guarantee", "sector") for r in receipt
                  if r["note"].startswith(f"domain: categories of '{column}'")]
    assert all(v < t for v, t in zip(coupler.new_values, thresholds, strict=False)), (coupler.new_values, thresholds)
    schema = SynthModel.load(tmp_path / "m1").schema
    assert "zz-salt-works" not in schema.column("sector").categories  # type: ignore[operator]
    assert {"TRUE", "FALSE"} <= set(schema.column("has_guarantee").categories)  # type: ignore[arg-type]
    for release in receipt:  # plan-fixed sizes only: a category release's size is the data's distinct count
        assert release.get("cells") is None or "categories of" not in release["note"], release


def test_releasable_report_does_not_depend_on_the_real_table(coupler, banks, tmp_path) -> None:
    """Same model, same synthetic rows, real table D or D': the releasable report is byte-identical, the
    confidential one is not (it holds exact statistics of the real table, and says so)."""
    table = banks["bank_harbour"]
    holdout = banks["bank_kowloon"]
    model = fit_synthesizer(table, SCHEMA, SynthConfig(epsilon=2.0))
    synthetic, sampling = generate(model, 1500, rng=seeded_generator(7))
    files = {}
    for name, real in (("d", table), ("d1", _plus_one(table, EXTRA))):
        doc = evaluate(SCHEMA, synthetic, real_train=real, holdout=holdout, model=model, groups=["sector"],
                       sample_report=sampling.to_dict(), privacy_rows=400)
        doc.pop("seconds")
        files[name] = write_evaluation(doc, tmp_path / name)
    for part in ("releasable_json", "releasable_html"):
        assert files["d"][part].read_bytes() == files["d1"][part].read_bytes(), part
    assert files["d"]["confidential_json"].read_bytes() != files["d1"]["confidential_json"].read_bytes()
    shared = json.loads(files["d"]["releasable_json"].read_text())
    assert not {"fidelity", "utility", "privacy", "skipped"} & set(shared)
    assert "real" not in shared["bias"]["sector"]
    assert "Confidential to the data owner" in files["d"]["confidential_html"].read_text()
