"""What a party agent writes down when it accepts a job: who asked, what runs, on which columns, with whom,
under which protections, and what leaves the bank (plain log line + the same fields in its audit log).

The "leaves" text is per workflow and protection, stated from the protocols' "What each role learns"
sections, so a bank's operator can read in its own log what the run sends out before it sends it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["job_record", "job_line"]

_LEAVES = {
    "horizontal": "model updates per round (clipped/noised under DP2/DP3; only their sum under secure "
                  "aggregation), feature statistics (noised under DP1), holdout evaluation histograms; never rows",
    "evaluation": "holdout evaluation histograms and counts of the given model; never rows",
    "vertical": "PSI-blinded ids (the intersection size), secret shares and masked values for secure LR, "
                "WOE/GBDT histograms of its columns (noised if announced), the bank's released metrics; its "
                "model part stays here; never rows",
    "scoring": "its partial score (shares) for the asked applicants; the bank alone sees scores; never rows",
    "serving": "while the bank's scoring service runs: its partial score (masked, sealed to the bank) for each "
               "applicant the bank asks about; the bank alone sees scores; never rows",
    "synthesis": "noisy marginals of its table (DP; summed under secure aggregation if announced); never rows",
}


def job_record(party: str, job: Mapping[str, Any], dataset: str, columns: Sequence[str]) -> dict[str, Any]:
    """The accepted job as this party states it (audit log detail)."""
    workflow = str(job.get("workflow"))
    return {
        "submitted_by": job.get("operator"),
        "workflow": workflow,
        "dataset": dataset,
        "columns": list(columns),
        "partners": [p for p in job.get("parties") or [] if p != party],
        "label_holder": job.get("label_holder"),
        "protections": list(job.get("protections") or []),
        "noise_multipliers": dict(job.get("noise_multipliers") or {}),
        "leaves": _LEAVES.get(workflow, "protocol messages of this workflow; never rows"),
    }


def job_line(record: Mapping[str, Any]) -> str:
    """One human-readable log line."""
    protections = ", ".join(record["protections"]) or "none"
    holder = f", label holder {record['label_holder']}" if record.get("label_holder") else ""
    return (
        f"job from {record['submitted_by'] or '?'}: {record['workflow']} on dataset {record['dataset']} "
        f"(columns {', '.join(record['columns'])}) with {', '.join(record['partners']) or 'no other party'}"
        f"{holder}; protections: {protections}; leaves this party: {record['leaves']}"
    )
