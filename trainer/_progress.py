"""Rich progress bars for long steps (training, calibration, export, verification)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["Reporter"]

log = logging.getLogger(__name__)


class Reporter:
    """One rich Progress for a whole run; ``quiet`` turns bars off (library use, tests)."""

    def __init__(self, quiet: bool = True, console: Console | None = None) -> None:
        self.quiet = quiet
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            disable=quiet,
        )

    def __enter__(self) -> Reporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """Yield ``advance(n=1, info="")``; the bar completes when the block ends."""
        log.info("%s (%d steps)", description, total)
        tid = self._progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = "") -> None:
            self._progress.update(tid, advance=n, info=info)

        try:
            yield advance
        finally:
            self._progress.update(tid, completed=total)

    def note(self, message: str) -> None:
        log.info("%s", message)
        if not self.quiet:
            self._progress.console.print(message)
