"""Progress events from a running workflow; the CLI renders them, tests and benchmarks ignore them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RoundResult:
    round: int
    seconds: float
    parties: list[str]
    train_loss: float
    global_metrics: dict[str, float] = field(default_factory=dict)
    party_metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)


class ProgressHook(Protocol):
    def run_started(self, run_id: str, total_rounds: int, resumed_from: int) -> None: ...
    def round_started(self, round_number: int, n_parties: int) -> None: ...
    def party_done(self, party: str) -> None: ...
    def round_finished(self, result: RoundResult) -> None: ...


class NullProgress:
    def run_started(self, run_id: str, total_rounds: int, resumed_from: int) -> None:
        pass

    def round_started(self, round_number: int, n_parties: int) -> None:
        pass

    def party_done(self, party: str) -> None:
        pass

    def round_finished(self, result: RoundResult) -> None:
        pass
