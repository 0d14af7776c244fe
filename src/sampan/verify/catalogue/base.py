"""What a catalogue test is (`Test`), what it returns (`Result`) and what it gets to work with (`Context`).

A test is data plus one function: id, title, category, profiles, the capabilities it needs, its inputs and
pass rule in words, the thresholds it uses (keys of `sampan.verify.thresholds`), and ``run(ctx) -> Result``.
The runner turns a Result into a `results.Outcome`; a test whose capability the platform lacks is never run
(verdict skip, "not applicable"), unless the test checks a claim the platform makes (``claim``): then "fail",
claimed but not verifiable; one that raises becomes verdict error. Verdicts: pass, fail, skip, error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sampan.verify.catalogue.data import BenchData
from sampan.verify.catalogue.http import Api
from sampan.verify.results import Category, Plot, Verdict
from sampan.verify.results import Threshold as ReportThreshold
from sampan.verify.thresholds import threshold

__all__ = ["PROFILES", "Context", "ExportNotTied", "Gamed", "Result", "Test", "NotApplicable", "report_threshold"]

PROFILES = ("quick", "standard", "full")


class NotApplicable(Exception):  # noqa: N818 (a verdict, not an error)
    """Raised by a test that finds, while running, that it does not apply (verdict skip with the reason)."""


class Gamed(Exception):  # noqa: N818 (a verdict, not an error)
    """Raised by a test that catches the platform treating its probe specially (an export the federation did not
    train, canary columns left out of the aggregate): verdict fail, whatever the test's own figure says."""

    evidence_key = "integrity"

    def __init__(self, message: str, evidence: dict[str, Any]) -> None:
        super().__init__(message)
        self.evidence = evidence


class ExportNotTied(Gamed):
    """The judged model export is not the model the federation trained (`sampan.verify.catalogue.export_tie`)."""

    evidence_key = "export_tie"


@dataclass
class Result:
    verdict: Verdict
    message: str = ""
    figures: dict[str, float | None] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)


@dataclass(frozen=True)
class Test:
    __test__ = False  # not a pytest test class

    id: str
    title: str
    category: Category
    profiles: frozenset[str]
    run: Callable[[Context], Result]
    inputs: str = ""
    pass_rule: str = ""
    requires: tuple[str, ...] = ()  # capabilities from /info; any absent -> skip (not applicable)
    thresholds: tuple[str, ...] = ()  # keys of sampan.verify.thresholds; the first is the report's headline
    claim: str | None = None  # the /info claim this test checks, if any
    timeout_s: float = 120.0
    needs_kit: bool = False  # runs the verifier's own party (platforms without a kit: skip)

    def describe(self) -> dict[str, Any]:
        """The catalogue entry as plain data (docs, manifest)."""
        return {"id": self.id, "title": self.title, "category": self.category, "profiles": sorted(self.profiles),
                "inputs": self.inputs, "pass_rule": self.pass_rule, "requires": list(self.requires),
                "thresholds": list(self.thresholds), "claim": self.claim, "needs_kit": self.needs_kit}


def report_threshold(key: str) -> ReportThreshold:
    t = threshold(key)
    return ReportThreshold(rule=t.rule, value=t.value, unit=t.unit, source=t.source)


@dataclass
class Context:
    """Shared by the tests of one evaluation: the platform, its /info, the drawn data, a cache of jobs."""

    api: Api
    info: dict[str, Any]
    data: BenchData
    profile: str
    kit: str | None = None  # the party kit the verifier runs for its own party (None: black-box only)
    data_dir: Any = None  # where the shared datasets are (None: found by sampan.data.public)
    local_pids: tuple[int, ...] = ()  # the platform's processes when it runs on this machine (P-CPU-MEM)
    stop: threading.Event = field(default_factory=threading.Event)
    cache: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    key_locks: dict[str, threading.Lock] = field(default_factory=dict)
    verifier: dict[str, Any] = field(default_factory=dict)  # the verifier's CA and party material, made lazily
    job_seeds: list[int] = field(default_factory=list)  # the per-job TaskSpec seeds (secrets), for the manifest
    integrity: list[dict[str, Any]] = field(default_factory=list)  # this test's checks that the platform played fair

    @property
    def capabilities(self) -> set[str]:
        return set(self.info.get("capabilities") or [])

    @property
    def claims(self) -> dict[str, Any]:
        claims = self.info.get("claims")
        return claims if isinstance(claims, dict) else {}

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for, the cached value after (jobs shared by tests).

        One lock per key, so a slow job blocks only the tests that need it. A failure is cached too, so
        every test that needs a broken job reports the same error quickly.
        """
        with self.lock:
            key_lock = self.key_locks.setdefault(key, threading.Lock())
        if not key_lock.acquire(timeout=900):
            raise TimeoutError(f"waited 900 s for the shared job {key!r}")
        try:
            if key not in self.cache:
                try:
                    self.cache[key] = ("ok", make())
                except Exception as exc:  # noqa: BLE001 (re-raised to each caller below)
                    self.cache[key] = ("error", exc)
            kind, value = self.cache[key]
        finally:
            key_lock.release()
        if kind == "error":
            raise value
        return value
