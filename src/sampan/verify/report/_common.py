"""What every renderer shares: text cleaning, number formatting, the overall verdict and the claims table."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sampan.verify.results import Evaluation, Outcome, Threshold

# Characters XML 1.0 forbids (C0 controls except tab/newline/CR, surrogates, U+FFFE/U+FFFF): a hostile
# platform's message must not make the HTML or JUnit file unparsable.
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
EVIDENCE_LIMIT = 20_000  # characters of evidence JSON shown per test (the full evidence is in results.json)


def clean(text: object) -> str:
    """A string safe to put in XML after escaping: forbidden characters become U+FFFD."""
    return _BAD_XML.sub("\ufffd", str(text))


def fmt_number(value: float | None) -> str:
    """Compact and stable: integers with separators, small/large numbers in scientific notation."""
    if value is None or not math.isfinite(value):
        return "—"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def fmt_threshold(threshold: Threshold | None) -> str:
    if threshold is None:
        return "—"
    value = threshold.value
    shown = fmt_number(float(value)) if isinstance(value, (int, float)) else (value or "")
    unit = f" {threshold.unit}" if threshold.unit and shown else ""
    return clean(f"{shown}{unit}" if shown else "—")


def fmt_seconds(value: float) -> str:
    if not math.isfinite(value) or value < 0:
        return "—"
    return f"{value:.2f} s" if value < 60 else f"{int(value // 60)} min {value % 60:.0f} s"


def overall(evaluation: Evaluation) -> str:
    """"failed" if any test failed or errored, "passed" if at least one passed and none did, else "no result"."""
    counts = evaluation.counts()
    if counts["fail"] or counts["error"]:
        return "failed"
    return "passed" if counts["pass"] else "no result"


def evidence_json(evidence: dict[str, Any]) -> str:
    text = json.dumps(evidence, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) > EVIDENCE_LIMIT:
        text = text[:EVIDENCE_LIMIT] + f"\n… ({len(text) - EVIDENCE_LIMIT:,} more characters in results.json)"
    return clean(text)


def fmt_claim(value: Any) -> str:
    """A claim from /info in words: booleans as yes/no, a DP claim as its ε, δ and level."""
    if value is None or value is False:
        return "no"
    if value is True:
        return "yes"
    if isinstance(value, dict):
        parts = []
        for key, sym in (("epsilon", "ε"), ("delta", "δ")):
            if isinstance(value.get(key), (int, float)):
                parts.append(f"{sym} = {fmt_number(float(value[key]))}")
        if value.get("level"):
            parts.append(f"level {value['level']}")
        return clean(", ".join(parts) or json.dumps(value, sort_keys=True, default=str))
    return clean(value)


@dataclass(frozen=True)
class ClaimRow:
    claim: str
    claimed: str
    tests: list[Outcome]
    measured: str  # confirmed | contradicted | not tested | inconclusive


def claims_table(evaluation: Evaluation) -> list[ClaimRow]:
    """One row per claim the platform made in /info (or a test checked): what it claimed, what the tests found.

    A claim is "contradicted" when a test of it failed, "confirmed" when every test of it that ran passed,
    "not tested" when no test of it ran (skips count as not run), else "inconclusive" (errors only).
    """
    names = list(evaluation.target.claims)
    names += [o.claim for o in evaluation.outcomes if o.claim and o.claim not in names]
    rows = []
    for name in dict.fromkeys(names):
        tests = [o for o in evaluation.outcomes if o.claim == name]
        ran = [o for o in tests if o.verdict != "skip"]
        if any(o.verdict == "fail" for o in ran):
            measured = "contradicted"
        elif ran and all(o.verdict == "pass" for o in ran):
            measured = "confirmed"
        elif not ran:
            measured = "not tested"
        else:
            measured = "inconclusive"
        rows.append(ClaimRow(clean(name), fmt_claim(evaluation.target.claims.get(name)), tests, measured))
    return rows


def duration(evaluation: Evaluation) -> float | None:
    """Seconds between started and finished, or None when either is missing or unparsable."""
    from datetime import datetime

    try:
        start, end = datetime.fromisoformat(evaluation.started), datetime.fromisoformat(evaluation.finished)
        return (end - start).total_seconds()
    except (TypeError, ValueError):
        return None


def threshold_rows(outcome: Outcome) -> list[Threshold]:
    """The headline threshold, then any further ones the runner put in evidence["thresholds"] (key -> fields)."""
    rows = [outcome.threshold] if outcome.threshold is not None else []
    extra = outcome.evidence.get("thresholds")
    if isinstance(extra, dict):
        for item in extra.values():
            if isinstance(item, dict) and isinstance(item.get("rule"), str):
                value = item.get("value")
                th = Threshold(rule=item["rule"], value=value if isinstance(value, (int, float, str)) else None,
                               unit=str(item.get("unit") or ""), source=str(item.get("source") or ""))
                if th not in rows:
                    rows.append(th)
    return rows
