"""Bounds on a cursor walk, shared by every connector that pages by cursor.

A remote that hands back a cursor it gave before (A -> B -> A) or a new cursor
forever would keep a scan going until the process is killed. `CursorGuard`
stops both: any cursor seen before in the same walk ends it, and so does a
page count over the walk's ceiling. The ceiling is `2 x pages of the last
complete scan of that list + 10`, never above the connector's `max_pages`;
with no history it is `max_pages`. A partial walk never lowers the basis: one
resumed from a stored cursor saw only the rest of the list, and a time window
(Instock moves) is one slice of a list whose size varies with the hour, so its
basis is the largest window walked. A walk that hits its ceiling raises the
basis to what it walked, so a list that really grew passes on a later run
(after one alert) while a loop keeps failing, bounded, every run.

History is plain data in a `PageLedger` (one per job run, reached through a
context variable the runner sets, as `run_id` is): read in the job's thread when
a walk starts, updated by the walk (which may run in a read-ahead thread), and
written to the state DB by the runner after the run, never on a dry run.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from syncd.errors import PaginationError

MARGIN_FACTOR: Final = 2
MARGIN_PAGES: Final = 10
CHECKPOINT_PREFIX: Final = "scan_pages."


def page_ceiling(basis: int | None, max_pages: int) -> tuple[int, str]:
    """(ceiling, why) for a walk, from the pages of the last complete scan (the basis)."""
    if basis is None:
        return max_pages, f"max_pages = {max_pages}"
    derived = MARGIN_FACTOR * basis + MARGIN_PAGES
    if derived >= max_pages:
        return max_pages, f"max_pages = {max_pages}"
    return derived, f"{MARGIN_FACTOR} x {basis} pages of the last complete scan + {MARGIN_PAGES}"


@dataclass
class ScanRecord:
    """What one walk of a list left for the next one."""

    basis: int  # pages to derive the next ceiling from
    complete: bool  # the walk reached the list's end


@dataclass
class PageLedger:
    """Page history per `<connector>:<scan>`, loaded from and saved to checkpoints."""

    read: Callable[[str], str | None] = lambda key: None
    records: dict[str, ScanRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def basis(self, subject: str) -> int | None:
        with self._lock:
            if subject in self.records:
                return self.records[subject].basis
        raw = self.read(CHECKPOINT_PREFIX + subject)
        try:
            return int(raw) if raw else None
        except ValueError:
            return None  # an unreadable history only loses the derived ceiling

    def record(self, subject: str, pages: int, *, complete: bool) -> None:
        with self._lock:
            self.records[subject] = ScanRecord(pages, complete)

    def changes(self) -> Mapping[str, ScanRecord]:
        with self._lock:
            return dict(self.records)


_LEDGER: contextvars.ContextVar[PageLedger | None] = contextvars.ContextVar(
    "syncd_page_ledger", default=None
)


@contextmanager
def page_ledger(ledger: PageLedger) -> Iterator[PageLedger]:
    """Make `ledger` the one walks in this context (and threads copied from it) use."""
    token = _LEDGER.set(ledger)
    try:
        yield ledger
    finally:
        _LEDGER.reset(token)


@dataclass
class CursorGuard:
    """One walk's cursors and page count; `after_page` raises when the walk must stop."""

    connector: str
    scan: str
    ceiling: int
    why: str
    ledger: PageLedger | None = None
    previous: int | None = None  # the basis this walk's ceiling came from
    partial: bool = False  # resumed mid-list, or one window of a list: never lowers the basis
    pages: int = 0
    seen: set[str] = field(default_factory=set)

    @classmethod
    def start(
        cls,
        connector: str,
        scan: str,
        max_pages: int,
        first_cursor: str,
        *,
        partial: bool = False,
    ) -> CursorGuard:
        """Call in the job's thread: it reads the history of this list. A walk from a stored
        cursor is partial whatever `partial` says."""
        ledger = _LEDGER.get()
        subject = f"{connector}:{scan}"
        basis = ledger.basis(subject) if ledger is not None else None
        ceiling, why = page_ceiling(basis, max_pages)
        partial = partial or bool(first_cursor)
        guard = cls(connector, scan, ceiling, why, ledger, basis, partial=partial)
        if first_cursor:
            guard.seen.add(first_cursor)
        return guard

    @property
    def subject(self) -> str:
        return f"{self.connector}:{self.scan}"

    def after_page(self, next_cursor: str | None, has_more: bool, where: str) -> None:
        """Account one page; raise PaginationError if the walk would loop or overrun."""
        self.pages += 1
        if not has_more:
            if self.ledger is not None:
                # A walk that saw only part of the list never lowers the basis.
                pages = max(self.pages, self.previous or 0) if self.partial else self.pages
                self.ledger.record(self.subject, pages, complete=True)
            return
        if not next_cursor:
            self._fail(f"{where}: has_more without a next_cursor", "bad_pagination")
        assert next_cursor is not None
        if next_cursor in self.seen:
            self._fail(
                f"{where}: cursor {next_cursor[:40]!r} was seen before in this scan "
                f"(page {self.pages}); the list loops",
                "cursor_cycle",
            )
        if self.pages >= self.ceiling:
            if self.ledger is not None:  # the next run allows more: a list that grew passes
                self.ledger.record(self.subject, self.pages, complete=False)
            self._fail(
                f"{where}: more than {self.ceiling} pages ({self.why}); the list does not end",
                "page_ceiling",
            )
        self.seen.add(next_cursor)

    def _fail(self, message: str, code: str) -> None:
        raise PaginationError(
            message,
            connector=self.connector,
            code=code,
            details={"scan": self.scan, "pages": self.pages, "ceiling": self.ceiling},
        )
