"""A party's side of the checks: exact answers only; the DP mod (`sampan.checks.privacy`) noises what leaves.

What each role learns from these handlers (exactly, before the mod; under DP see `sampan.checks.privacy`):
- ``checks.schema``: the party's declared schema (public metadata; listed in the receipt as revealed).
- ``checks.label``: the label holder's row count and positives; in a vertical job its positives only (its row
  count is its PSI set size, which PSI already reveals exactly: review R14-CHECKS-3).
- ``checks.histogram`` (horizontal jobs only): per checked column, the counts per public bin and of missing
  cells, over exactly the bins, columns and bounds the job announced (`sampan.checks.terms.check_histogram`).
- ``checks.overlap``: the label holder's count of ids in common with the named partner (it learned the count
  in PSI cardinality mode; nobody learned which ids).
The party learns from the requests only the job's public settings (columns, bounds, bins, epsilons).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sampan.checks.protocol import HISTOGRAM, LABEL, OVERLAP, SCHEMA, describe_schema, histogram_counts, label_counts
from sampan.checks.terms import check_histogram
from sampan.core.party import Handler
from sampan.wire import Message

__all__ = ["ChecksParty"]


class ChecksParty:
    """One party's handlers for a checks job. ``psi`` is its `PsiParty` in a vertical job (None otherwise);
    ``job``: the job it approved (its histogram terms bind every histogram request)."""

    def __init__(self, name: str, data: Any, schema: Mapping[str, Any] | None = None, psi: Any = None,
                 job: Mapping[str, Any] | None = None) -> None:
        self.name, self.data, self.schema, self.psi = name, data, schema, psi
        self.job: Mapping[str, Any] = job or {}

    def handlers(self) -> dict[str, Handler]:
        out: dict[str, Handler] = {SCHEMA: self.describe, LABEL: self.label}
        if self.psi is not None:
            out[OVERLAP] = self.overlap
        else:  # a vertical job never compares histograms
            out[HISTOGRAM] = self.histogram
        return out

    def describe(self, msg: Message) -> Message:
        return msg.reply(SCHEMA, meta={"schema": describe_schema(self.name, self.schema, self.data)})

    def label(self, msg: Message) -> Message:
        counts = label_counts(self.name, self.data)
        if self.psi is not None:  # vertical: the row count is the PSI set size, revealed already
            return msg.reply(LABEL, meta={"positives": float(counts[1])})
        return msg.reply(LABEL, meta={"n": float(counts[0]), "positives": float(counts[1])})

    def histogram(self, msg: Message) -> Message:
        columns = msg.meta.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, list) and len(c) == 3 for c in columns):
            raise ValueError(f"party {self.name!r}: checks.histogram needs meta.columns = [[name, low, high], ...]")
        check_histogram(self.name, self.job, columns, msg.meta.get("bins"), self.schema or {})
        counts = histogram_counts(self.name, self.data, columns, int(msg.meta.get("bins", 0)))
        return msg.reply(HISTOGRAM, arrays={"counts": counts})

    def overlap(self, msg: Message) -> Message:
        peer = str(msg.meta.get("peer", ""))
        cardinality = getattr(self.psi, "cardinality", {})
        if peer not in cardinality:
            raise ValueError(f"party {self.name!r}: no PSI cardinality with {peer!r} in this job (run psi first)")
        return msg.reply(OVERLAP, meta={"count": float(cardinality[peer])})
