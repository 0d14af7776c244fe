"""The linear verification model trained across verification sites through the horizontal workflow (issue 20,
item 3), on synthetic device feature vectors with the Q3 layout (statistics + standardised cells), non-IID sites
(each its own device offset and copy strength), compared with central training, then run on secret shares."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from sampan.qr.distributed import Combiner, ModelVerifier, VerificationSite, verify_distributed
from sampan.qr.features import N_STATS
from sampan.qr.federated import (
    FlSettings,
    SiteCaptures,
    SiteDataError,
    site_model_rows,
    train_central,
    train_federated,
    train_local_only,
)
from sampan.qr.linear import LinearVerifierModel, model_features, template_unit
from sampan.qr.verifiers import auc
from sampan.runtime.store import Store

KEY = bytes(range(32))
SIDE = 8


def _captures(name: str, rng: np.random.Generator, items: int, device_shift: float, copy_signal: float,
              ) -> SiteCaptures:
    """Each item: an original (strong template signal, sharp stats) and a copy (weaker signal, blurrier)."""
    X, serials, labels = [], [], []
    for i in range(items):
        serial = f"{name}-{i}"
        t = template_unit(KEY, serial, SIDE) * SIDE * SIDE
        for label, signal in ((0, 1.0), (1, copy_signal)):
            cells = signal * t + rng.normal(size=t.size) * 1.2
            cells = (cells - cells.mean()) / cells.std()
            stats = rng.normal(size=N_STATS) * 0.1 + device_shift
            stats[:3] += 0.15 * label  # a copy is a little blurrier / lower contrast
            X.append(np.concatenate([stats, cells]))
            serials.append(serial)
            labels.append(label)
    return SiteCaptures(name, np.array(X), serials, np.array(labels))


@pytest.fixture
def sites() -> list[SiteCaptures]:
    rng = np.random.default_rng(3)
    return [_captures("site_a", rng, 24, 0.0, 0.75), _captures("site_b", rng, 24, 0.3, 0.8),
            _captures("site_c", rng, 16, -0.2, 0.7)]


def _test_auc(model: LinearVerifierModel, test: SiteCaptures) -> float:
    rows = np.array([model_features(x, KEY, s) for x, s in zip(test.features, test.serials, strict=True)])
    score = model.score(rows)
    return auc(score[test.labels == 0], score[test.labels == 1])


@pytest.mark.slow
def test_federated_run_is_a_stored_run_close_to_central_and_runs_on_shares(
        tmp_path: Path, sites: list[SiteCaptures]) -> None:
    settings = FlSettings(rounds=6)
    fed = train_federated(sites, KEY, store_path=tmp_path / "runs.db", work_dir=tmp_path / "work", settings=settings,
                          seed=4)
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    run = store.get_run(str(fed.run_id))
    assert run.status == "completed" and run.workflow == "horizontal"
    assert store.get_model(str(fed.model_name), fed.model_version).run_id == fed.run_id
    assert [r["round"] for r in fed.rounds] == list(range(1, 7))
    # every site's rows in its own private folder; no pooled file
    work = tmp_path / "work"
    assert sorted(p.name for p in work.iterdir()) == ["reports", "site_a", "site_b", "site_c"]
    for site in sites:
        folder = work / site.name
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for path in folder.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert all(line.startswith(site.name + "-") for line in path.read_text().splitlines()[1:])
    test = _captures("fresh", np.random.default_rng(99), 40, 0.1, 0.75)
    central = train_central(sites, KEY, settings=settings, seed=4)
    fed_auc, central_auc = _test_auc(fed.model, test), _test_auc(central.model, test)
    assert fed_auc > 0.9 and abs(fed_auc - central_auc) < 0.05  # about 0.97 each (not saturated)
    assert _test_auc(train_local_only(sites[2], KEY, settings=settings, seed=4).model, test) > 0.7
    # the trained model runs on secret shares and gives the plaintext score
    verifier = ModelVerifier(fed.model, KEY)
    sites_ = [VerificationSite(f"s{i}", i, [verifier]) for i in (1, 2, 3)]
    combiner = Combiner(2, [s.info for s in sites_], {"model": 0.0})
    for x, serial in zip(test.features[:4], test.serials[:4], strict=True):
        verdict = verify_distributed(x, serial, sites_, combiner)
        expected = float(fed.model.score(model_features(x, KEY, serial))[0])
        assert verdict.scores["model"] == pytest.approx(expected, abs=1e-4)


def test_a_site_without_copies_or_with_mismatched_rows_is_refused_by_name(sites: list[SiteCaptures]) -> None:
    only_originals = SiteCaptures("site_x", sites[0].features[::2], sites[0].serials[::2], sites[0].labels[::2])
    with pytest.raises(SiteDataError, match="site 'site_x'.*both present"):
        site_model_rows(only_originals, KEY)
    short = SiteCaptures("site_y", sites[0].features, sites[0].serials[:3], sites[0].labels)
    with pytest.raises(SiteDataError, match="site 'site_y'"):
        site_model_rows(short, KEY)
    with pytest.raises(SiteDataError, match="cannot name a folder"):
        site_model_rows(SiteCaptures("../up", sites[0].features, sites[0].serials, sites[0].labels), KEY)


def test_fl_eval_sites_are_non_iid_and_capture_items_labels_each_capture() -> None:
    from sampan.qr.cdp import layout_for
    from sampan.qr.channel import rng_for
    from sampan.qr.fl_eval import SITE_PLAN, capture_items

    devices = [d for d, _ in SITE_PLAN.values()]
    assert len(set(devices)) == len(devices)  # each site its own phone
    assert len({kinds for _, kinds in SITE_PLAN.values()}) == len(SITE_PLAN)  # and its own mix of copies
    text = "SMP1:SN-000123:ISSUER:20270101:ABCDEFGHIJ"
    rows = capture_items(text, KEY, layout_for(text), prefix="t", items=2, devices=("phone-a",),
                         kinds=("photocopy",), rng=rng_for(1), estimator=None, every_kind=True)
    assert [(s, k) for s, k, _ in rows] == [("t-0", "original"), ("t-0", "photocopy"), ("t-1", "original"),
                                            ("t-1", "photocopy")]
    assert all(f.ndim == 1 and f.size > N_STATS for _, _, f in rows)
