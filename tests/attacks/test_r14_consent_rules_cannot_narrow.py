"""R14-CONSENT-6: in the default `[consent] mode = "rules"`, the implicit rule "allow" (party.toml's [allow], or
its permissive defaults) auto-approves every job [allow] permits, at ANY epsilon: a narrower standing rule the
party adds (max_epsilon, columns, operators, expiry) restricts nothing.

Claim (rules.py / docs/deploy.md §5a): a standing rule is "advance consent of `party` to jobs on `dataset`
within these limits" ("logistic regression on dataset X, epsilon <= 1, these columns only"); jobs no rule
covers need a person. `ConsentDesk._grounds` tries `[rule_from_allow(...), *rules]` and `[allow]` has no
epsilon key, so a party that adds only the rule "epsilon <= 0.5 on loans" still has a coordinator-submitted
(`operator:`) job spending epsilon 4 of its lifetime budget approved automatically, decided_by "rule:allow".
The console offers these rules as the way to limit auto-approval, so an operator is told it is limited.
Fix: once a party holds rules of its own, `[allow]` is the hard limit only (not a rule), or give [allow]
a max_epsilon and make the implicit rule opt-in (`[consent] allow_is_rule = true`).
Fixed: once a party holds rules of its own, [allow] is its hard limit only; [allow] max_epsilon caps every job.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _consent_grant import consent_federation, loans_spec, request_consent  # noqa: E402

BIG: dict[str, Any] = {"run": {"name": "big", "workflow": "horizontal", "rounds": 2, "seed": 3},
                       "privacy": {"epsilon": 4.0, "delta": 1e-5, "dp2": {"noise_multiplier": 1.2}},
                       "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def _budget_8(text: str) -> str:
    return text + "\n[data.loans.budget]\nepsilon = 8.0\n"


def _allow_max_1(text: str) -> str:
    """[allow] max_epsilon = 1.0, a budget of 8 and decisions relayed from the console accepted."""
    if "[allow]" in text:
        text = text.replace("[allow]", "[allow]\nmax_epsilon = 1.0", 1)
    else:
        text += "\n[allow]\nmax_epsilon = 1.0\n"
    return _budget_8(text) + "\n[consent]\nconsole_decisions = true\n"


def test_a_job_beyond_the_party_s_only_rule_is_not_approved_automatically(tmp_path: Path) -> None:
    with consent_federation(tmp_path, edit=_budget_8) as (_, agents, names):
        victim = agents[names[0]]
        victim.consent.add_rule({"id": "small-lr", "party": names[0], "dataset": "loans", "max_epsilon": 0.5},
                                "person:risk-officer", relayed=False)
        spec = loans_spec(BIG, names, victim.consent.served_columns("loans"), "big-1")
        reply = request_consent(victim, spec)
        assert reply.is_error, ("approved automatically", reply.meta.get("approval", {}).get("reserved"),
                                victim.consent.book.status("loans")["remaining_epsilon"])


def test_allow_max_epsilon_is_a_hard_limit_even_on_a_person_s_decision(tmp_path: Path) -> None:
    with consent_federation(tmp_path, edit=_allow_max_1) as (_, agents, names):
        victim = agents[names[0]]
        spec = loans_spec(BIG, names, victim.consent.served_columns("loans"), "big-2")
        reply = request_consent(victim, spec, "person:officer")
        assert reply.is_error and "max_epsilon" in str(reply.meta), reply.meta
        assert victim.consent.book.status("loans")["reserved_epsilon"] == 0
