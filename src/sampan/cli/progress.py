"""Rich rendering of workflow progress for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sampan.runtime.progress import RoundResult


class RichProgress:
    """One bar for the run's rounds, one for the parties of the current round."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console, transient=False,
        )
        self._rounds: TaskID | None = None
        self._parties: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def run_started(self, run_id: str, total_rounds: int, resumed_from: int) -> None:
        label = f"run {run_id}" + (f" (resumed after round {resumed_from})" if resumed_from else "")
        self._rounds = self.progress.add_task(label, total=total_rounds, completed=resumed_from, info="")

    def warning(self, message: str) -> None:
        """A run warning (e.g. destructive DP1 noise), printed above the bars."""
        self.console.print(f"[bold yellow]WARNING:[/] {message}", soft_wrap=True)

    def round_started(self, round_number: int, n_parties: int) -> None:
        if self._parties is not None:
            self.progress.remove_task(self._parties)
        self._parties = self.progress.add_task(f"  round {round_number}: parties training", total=n_parties, info="")

    def party_done(self, party: str) -> None:
        if self._parties is not None:
            self.progress.update(self._parties, advance=1, info=party)

    def round_finished(self, result: RoundResult) -> None:
        auc = result.global_metrics.get("auc")
        loss = result.train_loss  # NaN under DP: no training loss is released
        info = (f"loss {loss:.4f}" if loss == loss else "loss not released (DP)") + \
            (f"  test AUC {auc:.4f}" if auc is not None else "")
        if self._rounds is not None:
            self.progress.update(self._rounds, advance=1, info=info)
        if self._parties is not None:
            self.progress.remove_task(self._parties)
            self._parties = None
