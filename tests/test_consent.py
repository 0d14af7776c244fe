"""Consent bound to the job: the spec's canonical hash, signed approvals and standing rules (issue 14, item 2)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from sampan.config import ConfigError
from sampan.crypto.simulated_ca import SimulatedCA, simulated_consortium
from sampan.deploy.allow_section import AllowSection
from sampan.deploy.consent import (
    ConsentRefused,
    JobSpec,
    StandingRule,
    canonical_json,
    job_spec,
    matches,
    rule_from_allow,
    sign_approval,
    verify_approval,
)

PARTIES = ["bank_a", "bank_b", "bank_c"]
COLUMNS = ["age", "income", "debt"]
CONFIG: dict[str, Any] = {
    "run": {"name": "t", "workflow": "horizontal", "rounds": 3, "seed": 1},
    "model": {"kind": "logistic", "l2": 0.01},
    "privacy": {"epsilon": 2.0, "delta": 1e-5, "dp2": {"noise_multiplier": 1.1, "clip": 1.0}},
    "deploy": {"dataset": "loans", "submitted_by": "ops"},
}


def _spec(config: dict[str, Any] | None = None, **datasets: list[str]) -> JobSpec:
    data = {p: {"dataset": "loans", "columns": datasets.get(p, COLUMNS)} for p in PARTIES}
    return job_spec(config or CONFIG, parties=PARTIES, datasets=data, label_holder=None, operator="ops",
                    job_id="run-1")


def test_canonical_json_sorts_keys_has_no_whitespace_and_one_float_spelling() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()
    assert canonical_json({"a": 0.1 + 0.2}) == b'{"a":0.30000000000000004}'  # shortest round-trip repr
    assert canonical_json({"x": 1.0}) != canonical_json({"x": 1})  # a float stays a float
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ConfigError, match="finite"):
            canonical_json({"model": {"l2": bad}})


def test_the_hash_does_not_depend_on_key_order() -> None:
    shuffled = json.loads(json.dumps(CONFIG))
    shuffled = {k: shuffled[k] for k in reversed(list(shuffled))}
    shuffled["privacy"] = {k: shuffled["privacy"][k] for k in reversed(list(shuffled["privacy"]))}
    assert _spec(shuffled).spec_hash() == _spec().spec_hash()
    again = JobSpec.model_validate(json.loads(_spec().canonical_json()))  # as it travels and is parsed back
    assert again.spec_hash() == _spec().spec_hash()


def test_any_change_to_any_field_voids_the_hash() -> None:
    base = _spec()
    changes: dict[str, Any] = {
        "job_id": "run-2", "workflow": "evaluation", "code_version": "9.9.9", "operator": "mallory",
        "parties": ("bank_a", "bank_b"), "label_holder": "bank_a",
        "data": {**base.data, "bank_b": base.data["bank_b"].model_copy(update={"columns": ("age", "income")})},
        "model": {"kind": "mlp", "settings": {}}, "rounds": 4,
        "privacy": base.privacy.model_copy(update={"epsilon": 2.5}), "protections": ("dp",),
        "job": {**base.job, "noise_multipliers": {"dp2": 0.9}}, "config_sha256": "0" * 64, "version": 2,
    }
    assert set(changes) == set(JobSpec.model_fields)  # every field is covered
    hashes = {base.spec_hash()}
    for name, value in changes.items():
        changed = base.model_copy(update={name: value})
        hashes.add(changed.spec_hash())
    assert len(hashes) == len(changes) + 1
    # and any change to the config, even one the other fields do not show
    other = json.loads(json.dumps(CONFIG))
    other["run"]["name"] = "renamed"
    assert _spec(other).spec_hash() != base.spec_hash()
    assert _spec(bank_b=["age", "income", "debt", "zip"]).spec_hash() != base.spec_hash()


def test_the_spec_states_columns_model_rounds_and_budget_per_level() -> None:
    spec = _spec()
    assert spec.data["bank_a"].columns == tuple(COLUMNS) and spec.rounds == 3
    assert spec.model == {"kind": "logistic", "settings": {"l2": 0.01}}
    assert spec.privacy.epsilon == 2.0 and spec.privacy.levels == {"dp1": None, "dp2": 2.0, "dp3": None}
    assert spec.planned() == (2.0, 1e-5) and "dp2" in spec.protections
    exact = {k: v for k, v in CONFIG.items() if k != "privacy"}
    assert _spec(exact).planned() == (0.0, 0.0)


def test_a_signed_approval_verifies_and_every_forgery_is_refused() -> None:
    verifier, ids = simulated_consortium(PARTIES)
    spec = _spec()
    approval = sign_approval(ids["bank_a"], spec, party="bank_a", decided_by="rule:allow",
                             reserved={"epsilon": 2.0, "delta": 1e-5})
    assert verify_approval(approval, spec, verifier).party == "bank_a"
    assert verify_approval(approval.model_dump(mode="json"), spec, verifier).party == "bank_a"
    other = spec.model_copy(update={"rounds": 9})
    with pytest.raises(ConsentRefused, match="covers job spec"):
        verify_approval(approval, other, verifier)  # the spec changed after approval
    with pytest.raises(ConsentRefused, match="does not verify"):  # altered reservation: the signature breaks
        verify_approval(approval.model_copy(update={"reserved": approval.reserved.model_copy(
            update={"epsilon": 0.1})}), spec, verifier)
    stolen = approval.model_copy(update={"party": "bank_b", "dataset": "loans"})
    with pytest.raises(ConsentRefused, match="bank_b"):  # bank_a's certificate cannot speak for bank_b
        verify_approval(stolen, spec, verifier)
    outsider = SimulatedCA().issue("bank_a")  # a certificate from another CA, same name
    forged = sign_approval(outsider, spec, party="bank_a", decided_by="rule:allow",
                           reserved={"epsilon": 2.0, "delta": 1e-5})
    with pytest.raises(ConsentRefused, match="does not verify"):
        verify_approval(forged, spec, verifier)


def test_rules_match_or_name_each_failing_field() -> None:
    spec = _spec()
    rule = StandingRule.model_validate({"id": "lr", "party": "bank_a", "dataset": "loans", "workflows": ["horizontal"],
                                        "model_kinds": ["logistic"], "max_epsilon": 2.0, "max_delta": 1e-5,
                                        "columns": COLUMNS + ["zip"], "partners": ["bank_b", "bank_c"],
                                        "require": ["dp2"]})
    assert matches(rule, spec, "bank_a") == []
    tight = rule.model_copy(update={"max_epsilon": 1.0, "columns": ["age", "income"], "model_kinds": ["mlp"],
                                    "partners": ["bank_b"], "require": ["secure_aggregation"],
                                    "expires_at": dt.datetime(2000, 1, 1, tzinfo=dt.UTC), "dataset": "other"})
    reasons = matches(tight, spec, "bank_a")
    for name in ("max_epsilon", "columns", "model_kinds", "partners", "require", "expires_at", "dataset"):
        assert any(r.startswith(name + ":") for r in reasons), (name, reasons)
    assert matches(rule, spec, "bank_b")[0].startswith("party:")


def test_the_allow_section_is_a_standing_rule_with_check_job_semantics() -> None:
    spec = _spec()
    assert matches(rule_from_allow(None, "bank_a"), spec, "bank_a") == []
    allow = AllowSection.model_validate({"columns": ["age", "income"], "require": ["secure_aggregation"]})
    reasons = matches(rule_from_allow(allow, "bank_a"), spec, "bank_a")
    assert reasons and reasons[0].startswith("allow.columns:")


def test_a_party_approves_locally_with_the_cli_and_a_refusal_is_one_clear_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sampan.cli import app
    from sampan.data import make_sme_consortium
    from sampan.deploy.config import load_party_config
    from sampan.deploy.consent import ConsentStore
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
    party_toml.write_text(party_toml.read_text() + "\n[data.loans.budget]\nepsilon = 3.0\n"
                          "\n[consent]\nmode = \"explicit\"\n")
    config = load_party_config(party_toml)
    columns = [f["name"] for f in binding["features"]]
    spec = job_spec(CONFIG, parties=[name], datasets={name: {"dataset": "loans", "columns": columns}},
                    label_holder=None, operator="ops", job_id="run-cli")
    job = tmp_path / "job.json"
    job.write_text(spec.model_dump_json())
    runner = CliRunner()
    result = runner.invoke(app, ["consent", "approve", str(job), "--party-config", str(party_toml), "--by", "officer",
                                  "--yes"])
    assert result.exit_code == 0, result.output
    stored = ConsentStore(config.party.state_dir).approval(spec.spec_hash())
    assert stored is not None and stored.decided_by == "person:officer" and stored.reserved.epsilon == 2.0
    budget = runner.invoke(app, ["consent", "budget", "--party-config", str(party_toml)])
    assert budget.exit_code == 0 and "loans: total 3, spent 0, reserved 2, remaining 1" in budget.output
    over = spec.model_copy(update={"job_id": "run-cli-2"})
    job.write_text(over.model_dump_json())
    refused = runner.invoke(app, ["consent", "approve", str(job), "--party-config", str(party_toml), "--yes"])
    assert refused.exit_code != 0 and "remaining lifetime budget" in refused.output
    assert "Traceback" not in refused.output
    settled = runner.invoke(app, ["consent", "settle", "run-cli", "--party-config", str(party_toml)])
    assert settled.exit_code == 0 and "released 2" in settled.output  # the reservation returns to the budget
    again = runner.invoke(app, ["consent", "approve", str(job), "--party-config", str(party_toml), "--yes"])
    assert again.exit_code == 0, again.output
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({"id": "small", "party": name, "max_epsilon": 0.5}))
    assert runner.invoke(app, ["consent", "rule", str(rule), "--party-config", str(party_toml)]).exit_code == 0
    removed = runner.invoke(app, ["consent", "remove-rule", "small", "--party-config", str(party_toml)])
    assert removed.exit_code == 0 and ConsentStore(config.party.state_dir).rules() == [], removed.output
    gone = runner.invoke(app, ["consent", "remove-rule", "small", "--party-config", str(party_toml)])
    assert gone.exit_code != 0 and "holds no standing rule 'small'" in gone.output
