"""R14-CONSENT-5: `consent.catalogue` releases each dataset's EXACT row count to the coordinator, uncharged.

Claim (DESIGN.md "Every claim is attacked"): "the transcripts of D and D plus one record ... may differ only in
outputs of mechanisms the ledger charged"; T1: the catalogue is "schema and counts only, never rows". The
count is itself data-dependent: any coordinator (or console user able to read the catalogue) learns, by asking
before and after, whether one customer was added or removed — with no DP and no charge, outside any job or
approval, as often as it likes. Fix: release a noisy/rounded count charged to a small fixed budget, or an
operator-declared approximate size from party.toml, or nothing.
Fixed: the catalogue publishes `[data.<name>] public_rows` (the operator's declared figure) or nothing; the
agent never counts the table for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402


def test_the_catalogue_of_d_and_d_plus_one_record_is_the_same(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        name, path = sorted(fed.files.party_configs.items())[0]
        agent = PartyAgent(load_party_config(path))

        def catalogue() -> list[dict[str, object]]:
            reply = agent.handle(Message("catalogue", 0, "coordinator", name, "consent.catalogue", meta={}))
            assert reply.kind == "consent.catalogue", reply.meta
            return list(reply.meta["datasets"])

        before = catalogue()
        csv = Path(fed.paths[name])
        lines = csv.read_text().splitlines()
        header, last = lines[0].split(","), lines[-1].split(",")
        id_column = header.index(f'"{before[0]["id"]}"')
        last[id_column] = '"NEIGHBOUR-0001"'  # D plus one customer
        csv.write_text("\n".join([*lines, ",".join(last)]) + "\n")
        after = catalogue()
        assert [d["rows"] for d in after] == [d["rows"] for d in before] == [None]  # not published by default
        declared = path.read_text().replace("[data.loans]\n", "[data.loans]\npublic_rows = 100\n", 1)
        assert declared != path.read_text()
        path.write_text(declared)
        agent = PartyAgent(load_party_config(path))
        assert [d["rows"] for d in catalogue()] == [100]  # the operator's figure, whatever the table holds
    finally:
        fed.coordinator.security.close()
