"""The privacy receipt of a run: what each party sent, under which protection, and what it cost.

Built only from what the store recorded (traffic log, ledger summary, chosen noise, config), so it
can be regenerated at any time and audited against the hash-chained event log.

`build_receipt` serves every workflow. Horizontal runs get the detailed receipt below (DP levels,
SecAgg+, evaluation rules, every catalogued field). Any other workflow states its own terms in its
result's info under ``"receipt"`` (stored with the run by the runner): ``threat_model`` (text),
``reveals`` ({protocol step: what each role learns}), ``protections`` ({message kind: protection of
what a party sends in it}), optionally ``messages`` (catalogue rows), ``randomness``, ``unit_of_privacy``;
its ledger summary goes under ``"privacy"`` as for horizontal runs. Per-party traffic always comes
from the stored traffic events (or the final traffic summary).

The receipt's parts live in modules of one job each, and every name stays importable from here:
`sampan.runtime.receipt_protections` (threat-model texts, the protection of each message kind) and
`sampan.runtime.receipt_html` (the report section).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sampan.files import atomic_write_json

# Re-exported: every name the receipt module had before its parts moved out stays importable from here.
from sampan.runtime.receipt_html import _audit_html as _audit_html
from sampan.runtime.receipt_html import _catalogue_html as _catalogue_html
from sampan.runtime.receipt_html import receipt_section as receipt_section
from sampan.runtime.receipt_protections import (
    EVALUATION_DP,
    EVALUATION_PLAIN,
    EVALUATION_SECAGG,
    SECAGG_THREAT_MODEL,
    THREAT_MODEL,
)
from sampan.runtime.receipt_protections import _shown as _shown
from sampan.runtime.receipt_protections import message_protection as _protection
from sampan.runtime.receipt_protections import secagg_section as _secagg
from sampan.runtime.store import Store
from sampan.wire.catalogue import PROTECTIONS, Setup, receipt_rows


def stored_traffic(store: Store, run_id: str) -> list[dict[str, Any]] | None:
    """Traffic per (party, direction, kind) summed over every `traffic` event the run logged.

    A resumed run has a fresh transport whose counters start at zero, so the transport's own summary
    covers only the last process; the events (saved with each round, and after the final evaluation)
    cover all of them. None when the run logged no per-party traffic (older runs, other workflows)."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    found = False
    for event in store.events(run_id):
        if event.kind != "traffic" or "by_party" not in (event.detail or {}):
            continue
        found = True
        for row in event.detail["by_party"]:
            entry = totals.setdefault((row["party"], row["direction"], row["kind"]), [0, 0])
            entry[0] += int(row["messages"])
            entry[1] += int(row["bytes"])
    if not found:
        return None
    return [{"party": p, "direction": d, "kind": k, "messages": m, "bytes": b}
            for (p, d, k), (m, b) in sorted(totals.items())]


def build_receipt(store: Store, run_id: str) -> dict[str, Any]:
    """The run's receipt, whatever its workflow (see the module docstring for what a workflow supplies)."""
    run = store.get_run(run_id)
    if run.workflow != "horizontal" or "receipt" in (run.info or {}):  # horizontal GBDT states its own terms
        receipt = _workflow_receipt(store, run_id)
    else:
        receipt = _horizontal_receipt(store, run_id)
    receipt["after_training"] = after_training_releases(store, run_id)
    consent = consent_terms(store, run_id)
    if consent is not None:
        receipt["consent"] = consent
    return receipt


def consent_terms(store: Store, run_id: str) -> dict[str, Any] | None:
    """A deployed job's consent (the coordinator's `consent` event): the approved spec hash and, per party, who
    decided and what it reserved of its dataset's lifetime budget; a job reserving nothing under no DP is listed
    as exact (no DP claim)."""
    for event in reversed(store.events(run_id)):
        if event.kind == "consent":
            detail = event.detail
            return {"spec_hash": detail.get("spec_hash"), "parties": {
                str(a.get("party")): {"dataset": a.get("dataset"), "decided_by": a.get("decided_by"),
                                      "reserved": a.get("reserved"),
                                      "exact": not (a.get("reserved") or {}).get("epsilon")
                                      and not (a.get("reserved") or {}).get("open_ended")}
                for a in detail.get("approvals") or []}}
    return None


def after_training_releases(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Releases a party made from the model's data after the run (`sampan monitor drift`: counts of its
    TRAINING rows, the run's DP unit, and its current population), as logged on the run: a reader of the
    receipt must not take the run's epsilon for the whole privacy loss of those rows (review R13-DR-1)."""
    releases = []
    for event in store.events(run_id):
        if event.kind != "monitoring_drift":
            continue
        detail, charged = event.detail, event.detail.get("charged") or {}
        protection = (f"DP1 Gaussian release (noise multiplier {detail.get('noise_multiplier')}) charged to the "
                      f"party's ledger {charged.get('ledger')!r} (epsilon spent there: {charged.get('epsilon_spent')}"
                      f" of {charged.get('epsilon_budget')}); not in the run's ledger above"
                      if detail.get("noise_multiplier") is not None else
                      "revealed exactly (no DP): counts of the party's training and current rows per fixed bin")
        releases.append({"release": "monitoring drift (score and feature counts, PSI)", "party": detail.get("party"),
                         "at": event.at.isoformat(timespec="seconds"), "protection": protection})
    return releases


def _sent_by_party(store: Store, run_id: str, info: dict[str, Any],
                   protection: Callable[[str, str], str]) -> dict[str, dict[str, Any]]:
    """Per party: every message kind it sent (count, bytes) with its protection."""
    parties: dict[str, dict[str, Any]] = {}
    traffic = stored_traffic(store, run_id)
    for row in traffic if traffic is not None else (info.get("traffic") or []):
        if row["direction"] != "sent":
            continue
        entry = parties.setdefault(row["party"], {"sent": []})
        entry["sent"].append({"kind": row["kind"], "messages": row["messages"], "bytes": row["bytes"],
                              "protection": protection(row["kind"], row["party"])})
    return parties


_RECEIPT_TERMS = {"threat_model", "reveals", "protections", "messages", "randomness", "unit_of_privacy",
                  "noise_multipliers"}


def _workflow_receipt(store: Store, run_id: str) -> dict[str, Any]:
    """A non-horizontal run's receipt from its stored info (``info["receipt"]``, ``info["privacy"]``)."""
    run = store.get_run(run_id)
    info = run.info or {}
    terms = info.get("receipt") or {}
    protections = terms.get("protections") or {}
    ledger = info.get("privacy") or {}
    parties = _sent_by_party(store, run_id, info, lambda kind, party: str(protections.get(
        kind, "see the workflow's threat model: no raw records, only the catalogued message fields")))
    for party, summary in (ledger.get("parties") or {}).items():
        parties.setdefault(party, {"sent": []}).update({
            k: summary.get(k) for k in ("budget", "epsilon_spent", "epsilon_by_level", "compositions_by_level")})
    return {
        "run_id": run_id,
        "workflow": run.workflow,
        "status": run.status,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "differential_privacy": bool(ledger),
        "unit_of_privacy": terms.get("unit_of_privacy",
                                     ledger.get("unit_of_privacy", "record-level within each party")),
        "neighbouring_relation": ledger.get("neighbouring_relation", "add_or_remove_one"),
        "accountant": ledger.get("accountant"),
        "delta": ((run.config or {}).get("privacy") or {}).get("delta"),
        "noise_multipliers": dict(terms.get("noise_multipliers") or {}),
        "budget_stop": info.get("budget_stop"),
        "threat_model": str(terms.get("threat_model") or (
            "Semi-honest parties and coordinator; the coordinator does not collude with a data party. Raw "
            "records never leave their owner: only the wire messages listed here do.")),
        "reveals": dict(terms.get("reveals") or {}),
        "randomness": str(terms.get("randomness") or (
            "splits and orders from the run seed; keys, masks and DP noise from the operating system's CSPRNG")),
        "parties": parties,
        "messages": list(terms.get("messages") or []),
        "protections": PROTECTIONS,
        "note": ledger.get("note"),
        **{k: v for k, v in terms.items() if k not in _RECEIPT_TERMS},
    }


def _horizontal_receipt(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    info = run.info or {}
    privacy_cfg = (run.config or {}).get("privacy")
    secagg = _secagg(run.config)
    checkpoint = store.latest_checkpoint(run_id)
    noise = dict((checkpoint.meta.get("noise") if checkpoint else None) or {})
    ledger = info.get("privacy") or {}
    parties = _sent_by_party(store, run_id, info,
                             lambda kind, party: _protection(kind, privacy_cfg, noise, secagg, party))
    for party, summary in (ledger.get("parties") or {}).items():
        entry = parties.setdefault(party, {"sent": []})
        entry.update({
            "budget": summary["budget"], "epsilon_spent": summary["epsilon_spent"],
            "epsilon_by_level": summary["epsilon_by_level"], "compositions_by_level": summary["compositions_by_level"]})
        if privacy_cfg and privacy_cfg.get("dp2"):
            entry["dp2_noise_multiplier"] = noise.get(f"DP2:{party}", noise.get("DP2"))
    setup = Setup.from_config(run.config or {})
    evaluation = (EVALUATION_DP if privacy_cfg else EVALUATION_PLAIN) + (EVALUATION_SECAGG if secagg else "")
    return {
        "run_id": run_id,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "differential_privacy": bool(privacy_cfg),
        "unit_of_privacy": ledger.get("unit_of_privacy", "record-level within each party"),
        "neighbouring_relation": ledger.get("neighbouring_relation", "add_or_remove_one"),
        "accountant": ledger.get("accountant"),
        "delta": (privacy_cfg or {}).get("delta"),
        "sampling": ("DP2: Poisson sampling of each party's rows with rate q per step; DP3: all selected parties, "
                     "selection not secret, no amplification claimed") if privacy_cfg else None,
        "noise_multipliers": noise,
        "budget_stop": info.get("budget_stop"),
        "threat_model": THREAT_MODEL + (SECAGG_THREAT_MODEL if secagg else ""),
        "secure_aggregation": ({"protocol": "SecAgg+ (Bell et al. 2020): X25519 pairwise masks, Shamir t-of-n shares "
                                "of mask keys and self-mask seeds, dropout recovery",
                                "min_contributors": secagg.get("min_contributors", 3),
                                **{k: secagg.get(k) for k in ("threshold", "neighbours", "frac_bits", "max_abs")}}
                               if secagg else None),
        "randomness": "partitions, initialisation and minibatch order from the run seed; DP noise, DP-SGD sampling "
                      "and masks from the operating system's CSPRNG",
        "parties": parties,
        "evaluation": evaluation,
        "holdout_rows_in_dp_unit": False if privacy_cfg else None,
        "messages": receipt_rows(setup),
        "protections": PROTECTIONS,
        "note": ledger.get("note"),
        "membership_audit": info.get("membership_audit"),
    }


def write_receipt(receipt: dict[str, Any], path: Path) -> Path:
    """Atomic JSON write next to the report."""
    return atomic_write_json(path, receipt, indent=2)
