"""The progress display of `sampan verify run|local`: a rich bar on stderr and one line per verdict as it comes."""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressDisplay"]

_VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold yellow", "skip": "dim"}


class ProgressDisplay:
    """Rich progress bar on stderr: tests done/total and the current test; a line per verdict as it comes."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True, disable=quiet)
        self.task = self.progress.add_task("starting", total=None)

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def __call__(self, event: Any) -> None:
        """Any event with ``phase``, ``test_id``, ``index``, ``total``, ``verdict``, ``seconds``, ``message``."""
        from rich.markup import escape

        phase = getattr(event, "phase", "")
        test_id = str(getattr(event, "test_id", "") or getattr(event, "id", ""))
        index, total = int(getattr(event, "index", 0) or 0), getattr(event, "total", None)
        verdict = getattr(event, "verdict", None)
        if phase == "start" or (verdict is None and phase not in {"end", "done", "setup"}):
            self.progress.update(self.task, description=escape(test_id), total=total, completed=max(index - 1, 0))
        elif phase == "setup":
            self.progress.update(self.task, description=escape(str(getattr(event, "message", "") or "setting up")))
        elif verdict is not None:
            self.progress.update(self.task, total=total, completed=index)
            if not self.quiet:
                seconds = getattr(event, "seconds", None)
                took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
                message = str(getattr(event, "message", "") or "")
                style = _VERDICT_STYLE.get(str(verdict), "")
                self.progress.console.print(
                    f"[{style}]{escape(str(verdict).upper()):>5}[/] {escape(test_id)}{took}"
                    + (f" [dim]{escape(message[:160])}[/]" if message else ""), soft_wrap=True)
