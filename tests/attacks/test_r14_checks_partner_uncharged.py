"""R14-CHECKS-3: in a vertical checks job under [checks.dp] the id-overlap count is a statistic of BOTH parties'
records (adding one customer to the partner's table, with an id the bank holds, moves it by one), but the
coordinator's ledger charges the overlap release to the label holder only (`ChecksWorkflow._overlap` ->
`plan.charge([holder], ...)`) and the partner's own DP mod never sees it. The partner's ledger shows epsilon 0 while a
count of its records was released, and the receipt says "record-level within each party".

Fixed: the coordinator charges the overlap release to the label holder and the partner, and the partner's DP mod
charges its own ledger when it answers psi.respond; the receipt says the PSI set sizes and the label holder's
exact count are outside the DP guarantee."""

from __future__ import annotations

import pytest

import sampan
from sampan.runtime.store import Store


def test_every_party_whose_records_feed_the_overlap_count_is_charged_for_it() -> None:
    cfg = {"run": {"name": "r14-checks-3", "workflow": "checks", "seed": 2, "report_dir": ""},
           "source": {"kind": "consortium", "n_smes": 300}, "vertical": {"label_holder": "bank"},
           "checks": {"dp": {"label_epsilon": 0.5, "overlap_epsilon": 0.5}}}
    finished = sampan.run(cfg, store=Store.open("sqlite://"))
    info = finished.result.info
    partners = list(info["checks"]["overlap"]["partners"])
    assert partners
    spent = {p: info["privacy"]["parties"][p]["epsilon_spent"] for p in partners}
    assert all(v >= 0.5 for v in spent.values()), f"overlap counts released, partners charged {spent}"


def test_the_partners_own_ledger_is_charged_for_its_share_of_the_overlap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The partner's agent charges its own ledger (write-ahead) when it answers psi.respond in a DP checks job."""
    from sampan.checks.capability import CHECKS
    from sampan.config import parse_config
    from sampan.privacy import Ledger
    from sampan.privacy.party_policy import PartyPrivacyPolicy
    from sampan.runtime.runner import start_run
    from sampan.transport.inprocess import InProcessTransport

    cfg = parse_config({"run": {"name": "r14-checks-3b", "workflow": "checks", "seed": 2, "report_dir": ""},
                        "source": {"kind": "consortium", "n_smes": 300}, "vertical": {"label_holder": "bank"},
                        "checks": {"dp": {"label_epsilon": 0.5, "overlap_epsilon": 0.25}}})
    setups = CHECKS.simulate(cfg, 2)
    paths = {p: tmp_path / f"{p}.json" for p in setups if p != "bank"}
    for p, path in paths.items():
        setups[p].policy = PartyPrivacyPolicy(epsilon=5.0, ledger_path=path)
    start_run(cfg, Store.open("sqlite://"), transport=InProcessTransport(
        {n: CHECKS.party_app(s) for n, s in setups.items()}))
    for p, path in paths.items():
        assert Ledger.from_json(path.read_text()).spent(p) == pytest.approx(0.25), p
