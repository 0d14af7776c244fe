"""A run's privacy receipt (JSON, `sampan.runtime.receipt`) shaped for a readable console page.

Why a pure function apart from the route: the receipt's JSON differs per workflow (horizontal runs carry DP levels
and SecAgg+, others their own terms, deployed jobs their consent) and any field may be missing in an older or
hand-edited file; this shapes whatever is there into tables (what each party sent under which protection, epsilon
per party and level, the consent terms) without trusting its types, so a malformed receipt renders as far as it
can instead of failing. The template autoescapes every value: a receipt is a file on disk, not trusted markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["receipt_view"]

_LEVELS = ("DP1", "DP2", "DP3")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sent(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = entry.get("sent")
    return [{"kind": str(r.get("kind", "")), "messages": r.get("messages"), "bytes": r.get("bytes"),
             "protection": str(r.get("protection", ""))} for r in rows if isinstance(r, Mapping)] \
        if isinstance(rows, list) else []


def receipt_view(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """Summary facts, per-party traffic and epsilon, consent, and the workflow's own terms, from the receipt."""
    parties = {str(p): _mapping(e) for p, e in _mapping(receipt.get("parties")).items()}
    levels = sorted({str(k) for e in parties.values() for k in _mapping(e.get("epsilon_by_level"))} | set(_LEVELS))
    epsilon = [{"party": p, "budget": _number(_mapping(e.get("budget")).get("epsilon")),
                "spent": _number(e.get("epsilon_spent")),
                "by_level": {lv: _number(_mapping(e.get("epsilon_by_level")).get(lv)) for lv in levels}}
               for p, e in parties.items() if "epsilon_spent" in e or "epsilon_by_level" in e]
    consent = _mapping(receipt.get("consent"))
    consent_rows = [{"party": str(p), "dataset": d.get("dataset"), "decided_by": d.get("decided_by"),
                     "epsilon": _number(_mapping(d.get("reserved")).get("epsilon")),
                     "delta": _number(_mapping(d.get("reserved")).get("delta")), "exact": bool(d.get("exact"))}
                    for p, d in ((p, _mapping(d)) for p, d in _mapping(consent.get("parties")).items())]
    facts = [(label, receipt.get(key)) for key, label in (
        ("run_id", "Run"), ("workflow", "Workflow"), ("status", "Status"), ("generated_at", "Written at"),
        ("differential_privacy", "Differential privacy"), ("unit_of_privacy", "Unit of privacy"),
        ("neighbouring_relation", "Neighbouring datasets"), ("accountant", "Accountant"), ("delta", "δ"),
        ("budget_stop", "Stopped by the budget"), ("note", "Note")) if receipt.get(key) not in (None, "", {})]
    terms = {key: receipt[key] for key in ("threat_model", "randomness", "sampling") if receipt.get(key)}
    return {"facts": facts, "levels": levels, "epsilon": epsilon,
            "sent": {p: _sent(e) for p, e in parties.items()},
            "consent": {"spec_hash": consent.get("spec_hash"), "parties": consent_rows} if consent else None,
            "noise": {str(k): v for k, v in _mapping(receipt.get("noise_multipliers")).items()},
            "secure_aggregation": {str(k): v for k, v in _mapping(receipt.get("secure_aggregation")).items()},
            "reveals": {str(k): v for k, v in _mapping(receipt.get("reveals")).items()},
            "terms": terms}
