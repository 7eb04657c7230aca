"""Skip an export run when none of its inputs changed since a run that compared them all.

planning.import and oregon.siop find what to send by recomputing every row's hash from
the host tables and comparing it with their ledger: on an idle site that is all their
work, to find nothing. A run that compared everything and wrote nothing (no intent, no
ledger row, no reject, no alert: the state DB's change counter did not move) leaves the
fingerprint of its inputs behind; the next run whose fingerprint is the same skips.

The fingerprint is of what the comparison reads besides the ledger: the host tables (the
newest `host_files` row: every load, merge or refusal of a host file writes one, in the
transaction that changes the tables), the job's options and connector sections, and what
the caller adds (the day, which moves the periods and horizons). The ledger itself can only
change through the job's own runs, and a run that sent anything records no fingerprint.
A `syncd rejects retry` of one of the job's rejects, or anything the caller says is still
open (an import job to poll), never skips. The fingerprint lives in this process's memory
only: a restart, a reload and `syncd once` compare in full; nothing is written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from syncd.jobs.base import JobContext
from syncd.jsontext import canonical, text_hash
from syncd.state.mirror.host import newest_host_file

_COMPARED: dict[str, str] = {}  # job -> fingerprint of the inputs its last clean run compared
_LOCK = threading.Lock()


def inputs_fingerprint(*parts: object) -> str:
    """The identity of a comparison's inputs (JSON-able values, in order)."""
    return text_hash(canonical(list(parts)))


@dataclass
class InputsCheck:
    """One run's check: `unchanged` says to skip; `finish` after a run that got to its
    end records the fingerprint when the run wrote nothing."""

    job: str
    fingerprint: str | None  # None: this run may not skip nor record (see `begin`)
    changes_before: int
    unchanged: bool

    @classmethod
    def begin(
        cls, ctx: JobContext, reject_source: str, *extra: object, open_work: bool = False
    ) -> InputsCheck:
        """Fingerprint the run's inputs (`extra`: the caller's, such as the day and its
        connector's section); never skip a dry run, retried rejects waiting for the job
        (`reject_source`), or `open_work` (e.g. an import job still to poll)."""
        store = ctx.store
        blocked = ctx.dry_run or open_work or store.has_rejects("retry", reject_source)
        fingerprint = None
        if not blocked:
            fingerprint = inputs_fingerprint(
                ctx.job,
                str(store.path),
                newest_host_file(store),
                ctx.options.model_dump(mode="json") if ctx.options is not None else None,
                ctx.settings.daemon.site_timezone,
                *extra,
            )
        with _LOCK:
            last = _COMPARED.get(ctx.job)
            if fingerprint is None or fingerprint != last:
                _COMPARED.pop(ctx.job, None)
        unchanged = fingerprint is not None and fingerprint == last
        return cls(ctx.job, fingerprint, store.changes_made(), unchanged)

    def finish(self, ctx: JobContext, *, wrote_elsewhere: bool = False) -> None:
        """The run compared everything: remember its inputs if it wrote nothing (on the
        job's connection, nor, `wrote_elsewhere`, on a helper's own)."""
        if (
            self.fingerprint is None
            or wrote_elsewhere
            or ctx.store.changes_made() != self.changes_before
        ):
            return
        with _LOCK:
            _COMPARED[self.job] = self.fingerprint


def forget_all() -> None:
    """Drop every remembered fingerprint (tests; a process that wants a full compare)."""
    with _LOCK:
        _COMPARED.clear()


__all__ = ["InputsCheck", "forget_all", "inputs_fingerprint"]
