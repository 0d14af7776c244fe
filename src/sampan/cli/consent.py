"""`sampan consent approve|rules|budget`: a party's own consent decisions, made on its own machine.

A party that does not trust the console's host to relay its operators' clicks (`[consent] console_decisions =
false`) approves a job here: the job spec (JSON, as the console or `sampan submit` shows it) is checked against
party.toml exactly as a relayed request would be ([allow] hard limits, the dataset and columns it serves, its
budget book), the budget reserved, the approval signed with the organisation key and kept in the party's own
consent records, where its agent finds it when the run opens.

The file must hold the spec exactly as signed: each key once, every field spelled out, nothing else (its
canonical JSON, or the same indented as the console shows it); anything else is refused, so the file a person
reads is the one signed (review R14-CONSENT-8: a decoy key early in the file and the real one at the end, of
which JSON parsers keep the last). The columns, partners and epsilon are printed and confirmed before
signing (`--yes` skips the prompt).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from sampan.cli.error_path import ErrorHandlingGroup, fail

console = Console()

consent_app = typer.Typer(help="A party's own consent: approve a job spec locally, add standing rules, show its "
                          "lifetime budgets.", no_args_is_help=True, cls=ErrorHandlingGroup)

_PartyConfig = typer.Option(..., "--party-config", help="This party's party.toml.")


def _desk(party_config: Path) -> tuple[Any, Any]:
    from sampan.deploy.agent_consent import ConsentDesk
    from sampan.deploy.config import load_party_config
    from sampan.files import private_sqlite
    from sampan.runtime.store import Store

    config = load_party_config(party_config)
    private_sqlite(config.store_url)
    store = Store.open(config.store_url)
    return ConsentDesk(config, store.log_event), store


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object (which one would be signed?)")
        seen[key] = value
    return seen


def _read_spec(job: Path) -> Any:
    """The spec in `job`, refused unless the file says exactly what its canonical JSON says (each key once)."""
    from sampan.deploy.consent import JobSpec

    try:
        raw = job.read_bytes()
    except OSError as exc:
        fail(f"cannot read {job}: {exc}")
    try:
        parsed = json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
        spec = JobSpec.model_validate(parsed)
    except ValueError as exc:
        fail(f"{job}: not a job spec: {exc}")
    if parsed != json.loads(spec.canonical_json()):
        fail(f"{job}: the file does not spell out the spec as signed (a field left to its default or written "
             "differently); use the spec as the console or `sampan submit` shows it")
    return spec


def _show(spec: Any, party: str) -> None:
    """What the approval binds, printed before signing."""
    part = spec.data.get(party)
    planned = spec.planned()
    epsilon = "open-ended (DP without a stated epsilon)" if planned is None else (
        "0 (exact: no DP)" if planned == (0.0, 0.0) else f"{planned[0]:g} (delta {planned[1]:g})")
    console.print(f"job {escape(spec.job_id)}: workflow {escape(spec.workflow)}, model "
                  f"{escape(str(spec.model.get('kind')))}, rounds {spec.rounds}, operator {escape(str(spec.operator))}")
    if part is not None:
        console.print(f"  dataset {escape(part.dataset)}, columns read: {escape(', '.join(part.columns))}")
    console.print(f"  partners: {escape(', '.join(p for p in spec.parties if p != party) or 'none')}; label holder: "
                  f"{escape(str(spec.label_holder))}")
    console.print(f"  epsilon reserved from this dataset's lifetime budget: {epsilon}")


@consent_app.command("approve")
def approve(job: Path = typer.Argument(..., help="The job spec (its canonical JSON)."),
            party_config: Path = _PartyConfig,
            by: str = typer.Option(None, "--by", help="Who decides (default: $USER)."),
            yes: bool = typer.Option(False, "--yes", help="Sign without asking for confirmation.")) -> None:
    """Approve a job spec as this party (signed with its organisation key; budget reserved)."""
    from sampan.deploy.consent import ConsentRefused

    spec = _read_spec(job)
    desk, store = _desk(party_config)
    _show(spec, desk.name)
    if not yes and not typer.confirm("Approve and sign this job?", default=False):
        store.close()
        fail("not approved")
    try:
        approval = desk.decide(spec, f"person:{by or os.environ.get('USER') or 'local'}", relayed=False)
    except ConsentRefused as exc:
        fail(str(exc))
    finally:
        store.close()
    console.print(f"approved job {escape(spec.job_id)} (spec {approval.spec_hash[:16]}…) as "
                  f"{escape(approval.party)}: reserved epsilon {approval.reserved.epsilon:g}")


@consent_app.command("rule")
def add_rule(rule: Path = typer.Argument(..., help="A standing rule (JSON: id, party, dataset, workflows, "
                                         "model_kinds, max_epsilon, columns, ...)."),
             party_config: Path = _PartyConfig) -> None:
    """Add (or replace) a standing rule of this party."""
    try:
        raw = json.loads(rule.read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read the rule {rule}: {exc}")
    desk, store = _desk(party_config)
    try:
        added = desk.add_rule(raw, "person:" + (os.environ.get("USER") or "local"), relayed=False)
    except ValueError as exc:
        fail(f"{rule}: {exc}")
    finally:
        store.close()
    console.print(f"rule {escape(added.id)} added for {escape(added.party)}")


@consent_app.command("remove-rule")
def remove_rule(rule_id: str = typer.Argument(..., help="The id of the standing rule to withdraw."),
                party_config: Path = _PartyConfig) -> None:
    """Withdraw a standing rule of this party (jobs it covered then need another rule or a person)."""
    from sampan.deploy.consent import ConsentRefused

    desk, store = _desk(party_config)
    try:
        held = desk.remove_rule(rule_id, "person:" + (os.environ.get("USER") or "local"), relayed=False)
    except ConsentRefused as exc:
        fail(str(exc))
    finally:
        store.close()
    if not held:
        fail(f"party {desk.name!r} holds no standing rule {rule_id!r}")
    console.print(f"rule {escape(rule_id)} removed for {escape(desk.name)}")


@consent_app.command("budget")
def budget(party_config: Path = _PartyConfig) -> None:
    """Each dataset's lifetime budget: total, spent, reserved, remaining."""
    desk, store = _desk(party_config)
    store.close()
    for name in desk.config.data:
        s = desk.book.status(name)
        total = "no limit" if s["total_epsilon"] is None else f"{s['total_epsilon']:g}"
        console.print(f"{escape(name)}: total {total}, spent {s['spent_epsilon']:.4g}, reserved "
                      f"{s['reserved_epsilon']:.4g}, remaining "
                      f"{'-' if s['remaining_epsilon'] is None else format(s['remaining_epsilon'], '.4g')}")


@consent_app.command("settle")
def settle(job_id: str = typer.Argument(..., help="The job (run id) to settle."), party_config: Path = _PartyConfig,
           outcome: str = typer.Option("abandoned", "--outcome", help="Recorded with the settlement.")) -> None:
    """Settle a job that will not run again (e.g. a failed run nobody resumes): what it spent stays spent, the
    rest of its reservation returns to the dataset's budget, and the job spends nothing more."""
    desk, store = _desk(party_config)
    try:
        entry = desk.book.settle(job_id, outcome)
    finally:
        store.close()
    if entry is None:
        fail(f"party {desk.name!r} has no job {job_id!r} in its budget book")
    console.print(f"job {escape(job_id)} settled: spent epsilon {entry.spent_epsilon:.4g}, released "
                  f"{max(entry.reserved_epsilon - entry.spent_epsilon, 0.0):.4g}")
