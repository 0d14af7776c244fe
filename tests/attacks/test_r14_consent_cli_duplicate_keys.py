"""R14-CONSENT-8: `sampan consent approve JOB.json` accepts a spec file with duplicate keys; the LAST one wins.

Claim (cli/consent.py, docs/deploy.md §5a): a party that does not trust the console approves "the job spec
(JSON, as the console or `sampan submit` shows it)" locally, and a spec's canonical JSON gives one job one
spelling. The file a person reviews is not canonical: the coordinator (or the console it hosts) writes JOB.json
with a decoy `"privacy": {"epsilon": 0.1, ...}` at the top, where the officer reads it, and the real
`"privacy": {"epsilon": 4.0, ...}` again at the end; pydantic keeps the last, the CLI signs and reserves 4.0 and
says so only after the fact. Fix: refuse a spec file whose bytes are not `spec.canonical_json()` (or at least
any JSON object with duplicate keys), and print the spec's columns and epsilon for confirmation BEFORE signing.
Fixed: the CLI refuses duplicate keys and any file that does not spell out the spec as signed, and shows the
columns, partners and epsilon before asking (`--yes` skips the question).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG: dict[str, Any] = {"run": {"name": "cli", "workflow": "horizontal", "rounds": 2, "seed": 3},
                          "privacy": {"epsilon": 4.0, "delta": 1e-5, "dp2": {"noise_multiplier": 1.2}},
                          "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_a_spec_file_with_duplicate_keys_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sampan.cli import app
    from sampan.data import make_sme_consortium
    from sampan.deploy.config import load_party_config
    from sampan.deploy.consent import ConsentStore, job_spec
    from sampan.deploy.local import Binding, write_federation

    consortium = make_sme_consortium(300, seed=4)
    paths = consortium.write_csv(tmp_path / "data")
    name = sorted(paths)[0]
    schema = consortium.schema_for(name)
    binding = {"id": schema.id_column, "label": schema.label_column,
               "features": [{"name": f.name, "kind": f.kind, **({"categories": list(f.categories)}
                                                                 if f.categories else {})} for f in schema.features]}
    files = write_federation(tmp_path / "fed", {name: {"loans": Binding(str(paths[name]), binding)}})
    party_toml = files.party_configs[name]
    party_toml.write_text(party_toml.read_text() + "\n[data.loans.budget]\nepsilon = 8.0\n")
    spec = job_spec(CONFIG, parties=[name], datasets={name: {"dataset": "loans", "columns": [
        f["name"] for f in binding["features"]]}}, label_holder=None, operator="ops", job_id="run-dup")
    real = spec.model_dump(mode="json")
    levels = {k: 0.1 if v else v for k, v in real["privacy"]["levels"].items()}
    decoy = {**real["privacy"], "epsilon": 0.1, "levels": levels}
    body = json.dumps({k: v for k, v in real.items() if k != "privacy"})
    text = '{"privacy": ' + json.dumps(decoy) + ", " + body[1:-1] + ', "privacy": ' + json.dumps(real["privacy"]) + "}"
    job = tmp_path / "job.json"
    job.write_text(text)
    runner = CliRunner()
    result = runner.invoke(app, ["consent", "approve", str(job), "--party-config", str(party_toml),
                                 "--by", "officer", "--yes"])
    store = ConsentStore(load_party_config(party_toml).party.state_dir)
    stored = store.approval(spec.spec_hash())
    assert result.exit_code != 0 and stored is None, (result.output, stored and stored.reserved)
    assert "'privacy' appears twice" in result.output and "Traceback" not in result.output
    job.write_text(json.dumps(real, indent=2))  # the honest file, as the console shows it: shown, then declined
    declined = runner.invoke(app, ["consent", "approve", str(job), "--party-config", str(party_toml),
                                   "--by", "officer"], input="n\n")
    assert declined.exit_code != 0 and store.approval(spec.spec_hash()) is None
    assert "epsilon reserved from this dataset's lifetime budget: 4" in declined.output
    assert binding["features"][0]["name"] in declined.output
    signed = runner.invoke(app, ["consent", "approve", str(job), "--party-config", str(party_toml),
                                 "--by", "officer"], input="y\n")
    assert signed.exit_code == 0 and store.approval(spec.spec_hash()) is not None, signed.output
