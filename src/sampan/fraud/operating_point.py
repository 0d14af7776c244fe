"""Which decision threshold a scan uses: the scanning bank's own operating point, kept in that bank's own file.

Why per bank: a threshold fixed on validation image scores pooled across banks needs every bank to release one
score per validation document to whoever fits it; that is data crossing a party boundary outside the workflow's
messages and outside the privacy ledger. By default (`threshold_scope = "bank"`) each bank fixes its OWN threshold
on its own real validation documents with the shared model.

What a bank's operating point is, exactly: its threshold is ONE of its real validation images' scores (the k-th
lowest, k = floor(fpr * n), `sampan.fraud.threshold.fit_threshold`), and its validation counts and rates are
functions of every validation score. So they stay in the bank's OWN file: the shared detector file (the model,
slicer, aggregation and the training provenance) carries nothing of any bank's validation -- no threshold, no
count, no rate -- and cannot be scanned with until a bank adds its own operating point (`bank_copy`: the copy the
bank keeps, ``"thresholds": {bank: {"threshold", "fpr", "n_real_validation"}}`` with that one bank only, and its own
validation figures). The scanning bank picks its own (`select_operating_point`). A pooled threshold
(`threshold_scope = "pooled"`) remains for simulations and benchmarks only; its file has no ``thresholds`` map, and
its provenance says that every validation score was released to the trainer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sampan.errors import ConfigError
from sampan.fraud.detector import Detector

__all__ = ["SCOPES", "OperatingPoint", "ThresholdScope", "bank_copy", "for_bank", "select_operating_point",
           "thresholds_of"]

BANK_COPY_NOTE = ("this bank's own operating point: its threshold is one of its own real validation images' scores "
                  "(the k-th lowest, k = floor(fpr * n)) and its validation counts and rates are below; keep this file "
                  "at the bank. Nothing of another bank's validation is in it.")

ThresholdScope = Literal["bank", "pooled"]
SCOPES: tuple[str, ...] = ("bank", "pooled")


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold a scan used, its FPR, how many real validation images fixed it, and whose they were."""

    threshold: float
    fpr: float
    n_real_validation: int | None
    scope: str                 # "bank": the bank's own documents; "pooled": all banks' scores pooled (simulation)
    bank: str | None = None    # the bank whose operating point this is (None: pooled, no bank named)

    def to_dict(self) -> dict[str, Any]:
        return {"bank": self.bank, "scope": self.scope, "threshold": self.threshold, "fpr": self.fpr,
                "n_real_validation": self.n_real_validation}

    def describe(self) -> str:
        """One line for a report: whose real validation images fixed this threshold."""
        n = "an unrecorded number of" if self.n_real_validation is None else str(self.n_real_validation)
        if self.scope == "bank":
            return f"bank {self.bank}'s own threshold, fixed on {n} of its real validation images"
        return (f"pooled threshold, fixed on {n} real validation images of all banks (their scores released to the "
                "trainer: a simulation/benchmark setting)")


def thresholds_of(data: Mapping[str, Any], source: str) -> dict[str, OperatingPoint]:
    """The per-bank operating points of a detector file's JSON object ({} for a pooled or older file)."""
    scope = data.get("threshold_scope", "pooled")
    if scope not in SCOPES:
        raise ConfigError(f"{source}: field 'threshold_scope' must be one of {', '.join(SCOPES)} (got {scope!r})")
    raw = data.get("thresholds")
    if scope == "pooled":
        if raw is not None:
            raise ConfigError(f"{source}: field 'thresholds' belongs to threshold_scope 'bank' (this file says "
                              "'pooled')")
        return {}
    if raw is None:
        raise ConfigError(f"{source} is the shared model of a per-bank training: it carries no bank's operating point "
                          "(field 'thresholds' is absent). Scan with your bank's own copy (WORK_DIR/<bank>/"
                          "detector.json)")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: field 'thresholds' must be a non-empty object {{bank: operating point}}")
    points = {}
    for bank, entry in raw.items():
        where = f"{source}: field 'thresholds.{bank}'"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object with threshold, fpr and n_real_validation")
        threshold, fpr, n = entry.get("threshold"), entry.get("fpr"), entry.get("n_real_validation")
        for key, value in (("threshold", threshold), ("fpr", fpr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{where}.{key} must be a finite number (got {value!r})")
        if not 0.0 <= float(threshold) <= 1.0 or not 0.0 < float(fpr) < 1.0:  # type: ignore[arg-type]
            raise ConfigError(f"{where}: threshold must be in [0, 1] and fpr strictly between 0 and 1")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.n_real_validation must be a positive integer (got {n!r})")
        points[str(bank)] = OperatingPoint(float(threshold), float(fpr), n, "bank", str(bank))  # type: ignore[arg-type]
    return points


def select_operating_point(detector: Detector, data: Mapping[str, Any], bank: str | None,
                           source: str) -> tuple[Detector, OperatingPoint]:
    """The detector with the scanning bank's threshold and FPR, and that operating point.

    Bank scope: ``bank`` must name one of the file's banks; it may be left out only when the file has exactly one.
    Pooled scope: the file's single threshold (``bank``, when given, is only recorded)."""
    points = thresholds_of(data, source)
    if not points:
        provenance = data.get("provenance")
        n = None
        if isinstance(provenance, dict):
            pooled = (provenance.get("validation") or {}).get("pooled") if isinstance(
                provenance.get("validation"), dict) else None
            n = pooled.get("real_images") if isinstance(pooled, dict) else None
        point = OperatingPoint(float(detector.threshold), float(detector.fpr), n if isinstance(n, int) else None,
                               "pooled", bank)
        return detector, point
    names = ", ".join(sorted(points))
    if bank is None:
        if len(points) > 1:
            raise ConfigError(f"{source} holds one threshold per bank ({names}): name the scanning bank with --bank")
        bank = next(iter(points))
    if bank not in points:
        raise ConfigError(f"{source} has no operating point for bank {bank!r}; its banks are: {names}")
    point = points[bank]
    return dataclasses.replace(detector, threshold=point.threshold, fpr=point.fpr), point


def bank_copy(shared: Mapping[str, Any], point: OperatingPoint, figures: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """The file a bank keeps: the shared detector file (model, slicer, aggregation, training provenance) plus this
    bank's own operating point and its own validation ``figures`` (counts and rates), nothing of another bank's."""
    if point.scope != "bank" or not point.bank:
        raise ConfigError("a bank's copy needs a bank-scope operating point naming the bank")
    entry = {"threshold": point.threshold, "fpr": point.fpr, "n_real_validation": point.n_real_validation}
    out = {k: v for k, v in shared.items() if k not in ("threshold", "thresholds", "provenance")}
    provenance = {k: v for k, v in dict(shared.get("provenance") or {}).items()
                  if k not in ("threshold", "validation", "threshold_note")}
    out.update({"threshold": point.threshold, "fpr": point.fpr, "threshold_scope": "bank",
                "thresholds": {point.bank: entry}})
    out["provenance"] = {**provenance, "threshold": point.threshold, "threshold_note": BANK_COPY_NOTE,
                         "validation": {"banks": {point.bank: dict(figures or {})}}}
    return out


def for_bank(data: Mapping[str, Any], bank: str, source: str = "detector file") -> dict[str, Any]:
    """A copy of a detector file's JSON that still holds several banks' operating points (a file written before
    the shared file dropped them), keeping ``bank``'s only: its threshold, its figures, none of the others' (no
    pooled figures, no lowest threshold)."""
    points = thresholds_of(data, source)
    if bank not in points:
        raise ConfigError(f"{source} has no operating point for bank {bank!r}; its banks are: "
                          f"{', '.join(sorted(points)) or 'none (pooled threshold)'}")
    provenance = data.get("provenance")
    figures: Mapping[str, Any] | None = None
    if isinstance(provenance, dict) and isinstance(provenance.get("validation"), dict):
        banks = provenance["validation"].get("banks")
        figures = banks.get(bank) if isinstance(banks, dict) and isinstance(banks.get(bank), dict) else None
    return bank_copy(data, points[bank], figures)
