"""Progress of long work, for a person at a terminal (`syncd once` on 400k rows).

A job reports through the one narrow hook in its context, `ctx.progress(stage, done,
total)`, and knows nothing of how (or whether) it is shown: the daemon and a piped
`syncd once` pass `no_progress`, so their output is what it was; `syncd once` at a
terminal passes a `TerminalProgress`, which draws click's progress bar on stderr.

click's bar, not rich or tqdm: click is already the CLI's library, and one bar per
stage with a count, a rate-based ETA where the total is known and a pulsing bar where
it is not is all this needs.
"""

from __future__ import annotations

import io
import itertools
from typing import Any, Protocol, TextIO, cast

import click


class Progress(Protocol):
    """`stage`: what is being done, as a person reads it (`inbox articles.csv rows`);
    `done`: units of it done so far; `total`: how many there are, None when unknown.
    A new stage ends the previous one."""

    def __call__(self, stage: str, done: int, total: int | None = None) -> None: ...


def no_progress(stage: str, done: int, total: int | None = None) -> None:
    """The default hook: shows nothing."""


class TerminalProgress:
    """One click progress bar per stage on a terminal stream (stderr)."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.stage: str | None = None
        self.bar: Any = None  # click's ProgressBar (not exported under a public name)

    def __call__(self, stage: str, done: int, total: int | None = None) -> None:
        if stage == self.stage and total is not None and self.bar.length is not None:
            self.bar.length = total  # the total grew (e.g. intents queued meanwhile)
        elif stage != self.stage:
            self.close()
            self.stage = stage
            look: dict[str, Any] = {"label": stage, "file": self.file, "show_pos": True}
            if total is None:  # an endless iterable (never iterated): a pulsing bar
                self.bar = click.progressbar(itertools.count(), show_eta=False, **look)
            else:
                self.bar = click.progressbar(length=total, width=24, **look)
            self.bar.__enter__()
        if done > self.bar.pos:
            self.bar.update(done - self.bar.pos)

    def log_stream(self) -> TextIO:
        """The stream for log lines while bars are drawn on the same terminal: a line
        written there first clears the bar's line, and the bar is drawn again after it,
        so neither runs into the other."""
        return cast(TextIO, _SharedLine(self))

    def close(self) -> None:
        """End the current bar (its line stays, finished)."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        self.bar = None
        self.stage = None


class _SharedLine(io.TextIOBase):
    def __init__(self, owner: TerminalProgress) -> None:
        super().__init__()
        self.owner = owner
        self.cleared = False

    def write(self, text: str) -> int:
        file, bar = self.owner.file, self.owner.bar
        if bar is not None and not self.cleared:
            file.write("\r\x1b[K")  # back to the line's start and clear it
            self.cleared = True
        file.write(text)
        if bar is not None and text.endswith("\n"):
            file.write(bar.format_progress_line())  # the bar again, below the log line
            self.cleared = False
        return len(text)

    def flush(self) -> None:
        self.owner.file.flush()

    def isatty(self) -> bool:
        return self.owner.file.isatty()
