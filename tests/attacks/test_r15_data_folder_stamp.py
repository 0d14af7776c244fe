"""R15-DATA-5 (fixed): a party agent bound to a folder or glob never re-reads it: a removed customer is still served.

Attack / validation: the agent re-reads a file-bound table when the file changes (`party_agent._stamp`: "a job
opened after the party replaced its table reads the new one"), so a bank that drops a customer (consent
withdrawn, erasure request) or corrects a feature stops serving the old rows at the next job. Issue 15 lets
`[data.<name>] path` be a folder or glob. Safe behaviour: the same for a folder: after a part file is replaced,
the next `table()` holds the new rows. It happened: `_stamp` returned None for a folder (and for a glob), so the first
table read stayed cached for the life of the agent. Now the stamp lists every file the path stands for (name,
mtime, size: `sources.stamp`), so a replaced, added or removed part file is seen at the next job.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.deploy.config import load_party_config
from sampan.deploy.party_agent import PartyAgent

HEAD = ('[party]\nname = "bank_b"\ncoordinator = "127.0.0.1:7000"\n'
        '[tls]\nca = "ca.pem"\ncert = "bank.pem"\nkey = "bank.key"\n')
SCHEMA = '[data.loans.schema]\nid = "id"\nfeatures = [{ name = "x" }]\n'


@pytest.mark.parametrize("binding", ['path = "loans"', 'path = "loans/*.csv"'])
def test_replaced_part_file_is_read_at_the_next_job(tmp_path: Path, binding: str) -> None:
    (tmp_path / "loans").mkdir()
    (tmp_path / "loans" / "part-0.csv").write_text("id,x\nc1,1\nc2,2\n")
    (tmp_path / "loans" / "part-1.csv").write_text("id,x\nerased,3\n")
    config_path = tmp_path / "party.toml"
    config_path.write_text(HEAD + "[data.loans]\n" + binding + "\n" + SCHEMA)
    agent = PartyAgent(load_party_config(config_path))
    assert sorted(agent.table("loans")[1].ids.tolist()) == ["c1", "c2", "erased"]
    (tmp_path / "loans" / "part-1.csv").write_text("id,x\nc3,4\n")  # the customer is erased
    assert "erased" not in agent.table("loans")[1].ids.tolist(), "the agent still serves the erased customer"


@pytest.mark.parametrize("binding", ['path = "loans"', 'path = "loans/*.csv"'])
def test_added_and_removed_part_files_are_seen(tmp_path: Path, binding: str) -> None:
    (tmp_path / "loans").mkdir()
    (tmp_path / "loans" / "part-0.csv").write_text("id,x\nc1,1\n")
    config_path = tmp_path / "party.toml"
    config_path.write_text(HEAD + "[data.loans]\n" + binding + "\n" + SCHEMA)
    agent = PartyAgent(load_party_config(config_path))
    assert agent.table("loans")[1].ids.tolist() == ["c1"]
    (tmp_path / "loans" / "part-1.csv").write_text("id,x\nc2,2\n")
    assert agent.table("loans")[1].ids.tolist() == ["c1", "c2"]
    (tmp_path / "loans" / "part-1.csv").unlink()
    first = agent.table("loans")[1]
    assert first.ids.tolist() == ["c1"]
    assert agent.table("loans")[1] is first  # unchanged files: the cached table, not a new read
