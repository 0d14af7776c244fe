"""R15-DATA-5: a party agent bound to a folder or glob never re-reads it: a removed customer is still served.

Attack / validation: the agent re-reads a file-bound table when the file changes (`party_agent._stamp`: "a job
opened after the party replaced its table reads the new one"), so a bank that drops a customer (consent
withdrawn, erasure request) or corrects a feature stops serving the old rows at the next job. Issue 15 lets
`[data.<name>] path` be a folder or glob. Safe behaviour: the same for a folder: after a part file is replaced,
the next `table()` holds the new rows. What happens: `_stamp` returns None for a folder (and for a glob, which
`os.stat` cannot find), the cached stamp is None too, so `None != None` is false and the first table read stays
cached for the life of the agent: the erased customer keeps being aligned, trained on and scored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.deploy.config import load_party_config
from sampan.deploy.party_agent import PartyAgent

HEAD = ('[party]\nname = "bank_b"\ncoordinator = "127.0.0.1:7000"\n'
        '[tls]\nca = "ca.pem"\ncert = "bank.pem"\nkey = "bank.key"\n')
SCHEMA = '[data.loans.schema]\nid = "id"\nfeatures = [{ name = "x" }]\n'


@pytest.mark.xfail(strict=True, reason="R15-DATA-5: a folder/glob-bound table is cached forever; replaced part "
                                       "files are never re-read")
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
