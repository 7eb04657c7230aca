"""The private world a dry run works in, so that it changes nothing anywhere.

A dry run runs the job's real code, end to end, against copies: a snapshot of
the state DB (SQLite's online backup: a read, never the write lock, so a running
daemon is not held up, and no lock at all is held across the job's network
calls) and, for a job that reads the host inbox, a copy of the inbox's entries,
both in a private temporary directory deleted afterwards. Whatever the job
writes (rows, checkpoints, intents, rejects, alerts, its `runs` row, archived or
refused files) lands in the copies; the runner reads the intents from the copy
before it is thrown away. Remote systems are only read: each job's `ctx.dry_run`
branch skips what would change a remote (pushes, import jobs, dataset imports,
Netstock's destructive `/file/pop_*`). The real state DB, host directory and
remotes are the same before and after; the real DB gets no `runs` row.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import structlog

from syncd.config import Settings
from syncd.errors import StateError
from syncd.host.dirs import HostDirs
from syncd.logs import Logger
from syncd.state import Store
from syncd.state.store import BUSY_TIMEOUT_MS

log: Logger = structlog.get_logger("syncd.dryrun")


@contextmanager
def dry_run_world(settings: Settings, *, with_inbox: bool) -> Iterator[Settings]:
    """Settings whose state directory and host directory are private copies.

    The copies live under `$TMPDIR` (mode 0700) and need as much space as the state
    DB (plus the inbox for `host.inbox`); they are deleted on the way out.
    """
    with tempfile.TemporaryDirectory(prefix="syncd-dry-run-") as tmp:
        root = Path(tmp)
        world = settings.model_copy(
            update={
                "daemon": settings.daemon.model_copy(update={"state_dir": root / "state"}),
                "host": settings.host.model_copy(update={"dir": root / "host"}),
            }
        )
        copy_state_db(settings.db_path, world.db_path)
        HostDirs(world.host_dir).ensure()
        if with_inbox:
            copy_inbox(HostDirs(settings.host_dir).inbox, HostDirs(world.host_dir).inbox)
        yield world


def copy_state_db(source: Path, target: Path) -> None:
    """Snapshot `source` into `target` (migrated to this syncd's schema); a missing
    source gives a fresh DB. The source is only read: no write, no write lock, and no
    WAL or SHM file left behind that was not there before."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.exists():
        # With a WAL present (a daemon is running, or one was killed), read-only: such a
        # connection never checkpoints on close. Without one, a read-write connection that
        # only reads removes the WAL and SHM files it had to create when it closes.
        wal = source.with_name(source.name + "-wal").exists()
        uri = f"{source.resolve().as_uri()}?mode=ro" if wal else str(source)
        try:
            with (
                closing(sqlite3.connect(uri, uri=wal, timeout=BUSY_TIMEOUT_MS / 1000)) as src,
                closing(sqlite3.connect(str(target))) as dst,
            ):
                src.backup(dst)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot read state DB {source} for the dry run: {exc}") from None
    Store.open(target).close()  # create, or migrate the copy (a newer schema is refused)


def copy_inbox(source: Path, target: Path) -> None:
    """Copy the inbox's entries as they are: regular files with their bytes, mode and
    mtime (so settling reads the same), symlinks as symlinks (never followed), FIFOs
    and directories as empty ones of the same kind. An entry that cannot be read is
    left out and logged: the real run will meet it."""
    target.mkdir(parents=True, exist_ok=True)
    if not source.is_dir():
        return
    for entry in os.scandir(source):
        into = target / entry.name
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(entry.path), into)
            elif stat.S_ISREG(mode):
                shutil.copy2(entry.path, into, follow_symlinks=False)
            elif stat.S_ISDIR(mode):
                into.mkdir()
            elif stat.S_ISFIFO(mode):
                os.mkfifo(into)
        except OSError as exc:
            log.warning("dry_run_inbox_entry_unreadable", file=entry.name, error=str(exc))
