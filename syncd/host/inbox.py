"""The host inbox: find settled files, load each in one transaction, then move it.

A file's life: the host writes it (under a `.tmp` or dot name, or slowly: a file
younger than `settle_time` is left alone), renames it into `inbox/`; syncd
hashes it, streams and validates it row by row into TEMP staging tables (which
belong to this connection, so parsing never holds the state DB's write lock),
then in ONE transaction records it in `host_files`, checks the snapshot guard,
merges the staged rows into the host table and stores the rejected rows. Only
then is the file moved to `archive/`.

Crash safety: a loaded file's (feed, name, sha256) is in `host_files`, written
in the transaction that loaded it; finding that file in `inbox/` again (a crash
between commit and move) only moves it. A file refused whole is moved to
`rejects/` with `<name>.errors.json` beside it; its reject row is not repeated if
the same bytes are refused again.

Memory: rows are read one at a time (csv.reader, bounded line reads) and staged
in batches; snapshot deletions and diffs run in SQL.

Hostile files: a bad row is a reject (file:line, field, reason) and the rows
after it load; a CSV record that cannot be read is rejected by its first line
and reading resumes at the next. Any error while loading one file that is not
the state DB's own (locked, full) sends that file to `rejects/` with an alert;
the files after it load. A file is checked (size, mtime, inode) after its load
commits and again after it is moved: one changed in place goes to `rejects/`
(with an alert) rather than to `archive/` with unloaded rows in it. A symlink,
FIFO or directory with a feed file's name is moved to `rejects/` unopened.

Here: the loading, per feed, and each file's fate. Reading a file's rows (or refusing
it whole) is `syncd.host.reading`; finding, checking and moving files on disk is
`syncd.host.files`.
"""

from __future__ import annotations

import codecs
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import structlog

from syncd.clock import iso
from syncd.config import HostConfig
from syncd.host.dirs import HostDirs
from syncd.host.feeds.fields import Format
from syncd.host.feeds.merge import (
    FEEDS,
    Accepted,
    Feed,
    MergeContext,
    create_stage_rejects,
    drop_stage_rejects,
    stage_rejects,
    staged_reject_count,
    staged_reject_sample,
    staged_rejects,
)
from syncd.host.feeds.options import FeedOptions, host_options
from syncd.host.files import (
    Identity,
    StrayEntry,
    classify,
    file_digest,
    free_name,
    identity,
    identity_now,
    move_file,
    scan_inbox,
    scan_strays,
)
from syncd.host.outbox import write_bytes_atomic
from syncd.host.reading import ALERT_FILE_REFUSED, BadRow, FileRefused, read_rows
from syncd.lifecycle import follow_umask
from syncd.logs import Logger
from syncd.progress import Progress, no_progress
from syncd.state import NewReject, Store
from syncd.state.mirror import host as host_files

log: Logger = structlog.get_logger("syncd.host")
SAMPLE_ERRORS = 20  # row errors quoted in a refused file's errors.json

# deferred: the file changed while it was read (still being written); left for the next scan.
# changed_after_load: its rows were loaded, then it changed in place: to rejects/, with an alert.
# not_a_file: a symlink, FIFO or directory with a feed name: moved to rejects/ unopened.
# failed: it could not even be moved to rejects/ (an alert says why); vanished: gone before load.
# loaded_not_moved: loaded, but the move to archive/ failed (an alert); a later scan moves it.
Status = Literal[
    "loaded_not_moved",
    "archived",
    "rejected_file",
    "already_loaded",
    "deferred",
    "changed_after_load",
    "not_a_file",
    "failed",
    "vanished",
]
# Alert kinds: a file refused whole (unreadable, not a regular file: ALERT_FILE_REFUSED,
# from syncd.host.reading), one that broke the loader, one that changed after it was
# loaded, and the snapshot guard.
ALERT_FILE_ERROR: Final = "host_file_error"
ALERT_FILE_CHANGED: Final = "host_file_changed"
ALERT_FEED_GUARD: Final = "host_feed_guard"


@dataclass(frozen=True)
class LoadResult:
    """What became of one inbox file."""

    feed: str
    file: str
    status: Status
    loaded: int = 0
    rejected: int = 0
    changed: int = 0
    deleted: int = 0
    moved_to: Path | None = None
    reason: str | None = None


class _AlreadyLoaded(Exception):
    """Another load of the same bytes committed first."""


class _FileChanged(Exception):
    """The file changed between hashing and the end of parsing."""


def _before_archive(path: Path) -> None:
    """Called after a file's rows are committed, just before it is moved to
    `archive/` (the window where a host writing in place could still append);
    tests replace it to append to the file there."""


# SQLite result codes that say the state DB itself is in trouble (locked, full,
# unreadable): the file is not to blame, so it stays in the inbox for the next run.
_STORE_TROUBLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def store_trouble(exc: BaseException) -> bool:
    """Whether an error while loading a file is the state DB's, not the file's."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (
        code is None or (code & 0xFF) in _STORE_TROUBLE
    )


T = TypeVar("T")
PROGRESS_EVERY = 1000  # rows between two progress reports of a file being read


def _reported(rows: Iterable[T], stage: str, progress: Progress) -> Iterator[T]:
    """`rows` as they are, reporting how many were read every PROGRESS_EVERY."""
    if progress is no_progress:
        yield from rows
        return
    count = 0
    for count, row in enumerate(rows, 1):
        if count % PROGRESS_EVERY == 0:
            progress(stage, count)
        yield row
    progress(stage, count)


def _stage(
    store: Store, feed: Feed, rows: Iterable[Accepted | BadRow], fmt: Format, batch_size: int
) -> tuple[int, int]:
    """Stage every row in batches (TEMP tables only); returns (accepted, rejected)."""
    db = store.db
    accepted = rejected = 0
    good: list[Accepted] = []
    bad: list[tuple[Any, ...]] = []

    def flush() -> None:
        with store.transaction():  # touches only TEMP tables: no lock on the state DB
            if good:
                feed.stage_rows(db, good, fmt)
            if bad:
                stage_rejects(db, bad)
        good.clear()
        bad.clear()

    for item in rows:
        if isinstance(item, Accepted):
            good.append(item)
            accepted += 1
        else:
            key = item.key or (None, "")
            bad.append((item.line, item.field, item.reason, item.payload, key[0], key[1]))
            rejected += 1
        if len(good) + len(bad) >= batch_size:
            flush()
    flush()
    return accepted, rejected


def _staged_rejects(store: Store, feed: str, name: str) -> Iterator[NewReject]:
    for line, field, reason, payload in staged_rejects(store.db):
        yield NewReject(
            source=f"host:{feed}",
            reference=f"{name}:{line}",
            field=field,
            reason=reason,
            payload=payload,
        )


def _sample_errors(store: Store) -> list[dict[str, Any]]:
    return staged_reject_sample(store.db, SAMPLE_ERRORS)


def load_file(
    store: Store,
    feed: Feed,
    path: Path,
    options: FeedOptions,
    run_id: str | None,
    *,
    host_dir: Path | None = None,
    batch_size: int = 5000,
    progress: Progress = no_progress,
) -> LoadResult:
    """Load one inbox file into its host table and move it (see the module docstring).

    `options` should come from `HostOptions.feed(name)` (its mode filled in); the
    host directory defaults to the parent of the file's `inbox/`.
    """
    dirs = HostDirs(host_dir or path.parent.parent).ensure()
    mode = options.mode or feed.default_mode
    kind = classify(path.name)
    fmt: Format = kind[1] if kind else "csv"
    bound = log.bind(feed=feed.name, file=path.name, mode=mode, run_id=run_id)
    file_info: dict[str, Any] = {"sha256": "", "size": 0, "format": fmt, "mode": mode, "id": None}
    try:
        file_info["id"] = identity(path)
        file_info["sha256"], file_info["size"] = file_digest(path)
        return _load_new(store, feed, path, dirs, options, file_info, run_id, batch_size, progress)
    except _AlreadyLoaded:
        return _archive_loaded(store, feed, path, dirs, file_info["sha256"], bound)
    except _FileChanged:
        bound.warning("host_file_changed_while_read", hint="the host should write, then rename")
        return LoadResult(feed.name, path.name, "deferred", reason="file changed while being read")
    except FileNotFoundError:
        if os.path.lexists(path):
            raise
        bound.warning("host_file_vanished", hint="something removed it from inbox/ before load")
        return LoadResult(feed.name, path.name, "vanished", reason="removed before it was loaded")
    except Exception as exc:
        if store_trouble(exc):
            raise  # the state DB's trouble: the file stays for the next run
        # Anything else is this file's doing: it must not stop the files after it.
        bound.exception("host_file_broke_the_loader")
        refused = FileRefused(
            f"could not be loaded: {type(exc).__name__}: {exc}",
            {"error": type(exc).__name__, "message": str(exc)},
            alert_kind=ALERT_FILE_ERROR,
        )
        return _refuse_file(store, feed, path, dirs, refused, file_info, run_id)


def _archive_loaded(
    store: Store, feed: Feed, path: Path, dirs: HostDirs, sha256: str, bound: Logger
) -> LoadResult:
    """A file loaded before (a crash kept it from moving): move it, load nothing again."""
    done = host_files.loaded_file(store, feed.name, path.name, sha256)
    assert done is not None  # _AlreadyLoaded is raised only when it exists
    moved = move_file(path, dirs.archive) if path.exists() else None
    bound.info("host_file_already_loaded", moved_to=str(moved), load_id=done["id"])
    return LoadResult(
        feed.name,
        path.name,
        "already_loaded",
        loaded=done["rows_loaded"],
        rejected=done["rows_rejected"],
        changed=done["rows_changed"],
        deleted=done["rows_deleted"],
        moved_to=moved,
    )


def _load_new(
    store: Store,
    feed: Feed,
    path: Path,
    dirs: HostDirs,
    options: FeedOptions,
    file_info: dict[str, Any],
    run_id: str | None,
    batch_size: int,
    progress: Progress = no_progress,
) -> LoadResult:
    """Load a file not loaded before (raises _AlreadyLoaded when it was)."""
    fmt, mode, size = file_info["format"], file_info["mode"], file_info["size"]
    if host_files.loaded_file(store, feed.name, path.name, file_info["sha256"]):
        raise _AlreadyLoaded
    kind = classify(path.name)
    try:
        if kind is None or kind[0] != feed.name:
            raise FileRefused(f"file name does not belong to feed {feed.name!r}")
        if options.format not in ("auto", fmt):
            raise FileRefused(
                f"feed {feed.name} is configured for {options.format} files "
                f"(host.options.feeds.{feed.name}.format), this one is {fmt}"
            )
        if size == 0:
            raise FileRefused("empty file")
        if size < len(codecs.BOM_UTF8) and codecs.BOM_UTF8.startswith(path.read_bytes()):
            # Python's reader would take these bytes for an empty file.
            raise FileRefused("not UTF-8 text: only part of a byte order mark")
        return _load_staged(
            store, feed, path, dirs, options, mode, fmt, file_info, run_id, batch_size, progress
        )
    except FileRefused as refused:
        return _refuse_file(store, feed, path, dirs, refused, file_info, run_id)


def _load_staged(
    store: Store,
    feed: Feed,
    path: Path,
    dirs: HostDirs,
    options: FeedOptions,
    mode: Literal["snapshot", "delta"],
    fmt: Format,
    file_info: dict[str, Any],
    run_id: str | None,
    batch_size: int,
    progress: Progress = no_progress,
) -> LoadResult:
    db = store.db
    name = path.name
    fraction = options.max_delete_fraction
    try:
        create_stage_rejects(db)
        feed.create_staging(db)
        started = time.monotonic()
        rows = _reported(read_rows(feed, path, fmt), f"inbox {name} rows", progress)
        accepted, _ = _stage(store, feed, rows, fmt, batch_size)
        if identity(path) != file_info["id"]:
            raise _FileChanged
        staged = time.monotonic()
        with store.transaction():
            now = iso()
            # First statement writes: the transaction holds the write lock from here on.
            load_id = host_files.record_loaded(
                store,
                feed=feed.name,
                name=name,
                sha256=file_info["sha256"],
                size=file_info["size"],
                fmt=fmt,
                mode=mode,
                at=now,
                run_id=run_id,
            )
            if load_id is None:  # pragma: no cover - two loads of one file raced
                raise _AlreadyLoaded
            ctx = MergeContext(load_id=load_id, file=name, mode=mode, now=now)
            held_back = feed.prepare(db, ctx)
            if mode == "snapshot":
                existing, absent = feed.guard_counts(db)
                if existing and absent > fraction * existing and not options.allow_mass_delete:
                    raise FileRefused(
                        f"snapshot would delete {absent} of {existing} rows of {feed.table} "
                        f"({absent / existing:.0%} > max_delete_fraction {fraction:g}); "
                        f"refused. If the host really dropped them, set "
                        f"host.options.feeds.{feed.name}.allow_mass_delete = true and put the "
                        "file back in inbox/",
                        {
                            "existing_rows": existing,
                            "would_delete": absent,
                            "rows_in_file": accepted - held_back,
                            "rows_rejected": staged_reject_count(db),
                            "max_delete_fraction": fraction,
                            "row_errors": _sample_errors(store),
                        },
                        alert_kind=ALERT_FEED_GUARD,
                    )
            changed, deleted = feed.merge(db, ctx)
            rejected = store.add_rejects(_staged_rejects(store, feed.name, name), run_id=run_id)
            loaded = accepted - held_back
            host_files.set_counts(
                store,
                ctx.load_id,
                loaded=loaded,
                rejected=rejected,
                changed=changed,
                deleted=deleted,
            )
            store.resolve_alerts(ALERT_FEED_GUARD, subject=feed.name)
        committed = time.monotonic()
    finally:
        feed.drop_staging(db)
        drop_stage_rejects(db)
    log.info(
        "host_file_loaded",
        feed=feed.name,
        file=name,
        mode=mode,
        run_id=run_id,
        loaded=loaded,
        rejected=rejected,
        changed=changed,
        deleted=deleted,
        load_id=ctx.load_id,
        parse_s=round(staged - started, 2),
        write_lock_s=round(committed - staged, 2),  # how long other writers waited
    )
    _before_archive(path)
    try:
        status, moved, reason = _archive_unchanged(
            store, feed, path, dirs, file_info, ctx.load_id, (loaded, rejected), run_id
        )
    except OSError as exc:
        # Loaded and recorded: a later scan finds the same bytes and only moves them.
        reason = f"loaded, but could not be moved out of inbox/: {type(exc).__name__}: {exc}"
        log.warning("host_file_not_moved", feed=feed.name, file=name, error=str(exc))
        store.open_alert(
            ALERT_FILE_ERROR,
            f"host feed {feed.name}: {name} {reason}",
            subject=f"{feed.name}:{name}",
        )
        status, moved = "loaded_not_moved", None
    return LoadResult(
        feed.name, name, status, loaded, rejected, changed, deleted, moved, reason=reason
    )


def _archive_unchanged(
    store: Store,
    feed: Feed,
    path: Path,
    dirs: HostDirs,
    file_info: dict[str, Any],
    load_id: int,
    counts: tuple[int, int],
    run_id: str | None,
) -> tuple[Status, Path | None, str | None]:
    """Move a loaded file to `archive/` only while it is still the file that was read.

    Its identity (size, mtime, inode) is checked after the commit and again after
    the move: a file that grew or was rewritten in place goes to `rejects/` with
    the reason and an alert instead, so no unloaded row ends up in `archive/`.
    A file replaced by a new one of the same name (another inode) is left alone:
    that is a new file, loaded on its own.
    """
    expected: Identity = file_info["id"]
    current = identity_now(path)
    if current is None:
        log.warning("host_file_gone_before_archive", feed=feed.name, file=path.name)
        return "archived", None, "removed from inbox/ after it was loaded"
    if current[2:] != expected[2:]:
        log.warning(
            "host_file_replaced_after_load",
            feed=feed.name,
            file=path.name,
            hint="a new file took its name; it is loaded on its own",
        )
        return "archived", None, "replaced by a new file of the same name after it was loaded"
    if current == expected:
        moved = move_file(path, dirs.archive)
        after = identity_now(moved)
        if after is None or after == expected:
            return "archived", moved, None
        path, current = moved, after  # written to even as it was moved
    loaded, rejected = counts
    reason = (
        f"changed after it was loaded: the {expected[0]} bytes read were loaded (load "
        f"{load_id}: {loaded} rows loaded, {rejected} rejected), but the file is now "
        f"{current[0]} bytes and was modified again, and what changed was NOT loaded. Put "
        "it back into inbox/ to load it whole (rows loaded already load again unchanged), "
        "and have the host write files under a temporary name and rename them into inbox/"
    )
    report = {
        "file": path.name,
        "feed": feed.name,
        "reason": reason,
        "details": {
            "load_id": load_id,
            "bytes_loaded": expected[0],
            "bytes_now": current[0],
            "rows_loaded": loaded,
            "rows_rejected": rejected,
        },
        "sha256_loaded": file_info["sha256"],
        "rejected_at": iso(),
    }
    target = _park(path, dirs, report)
    with store.transaction():
        store.add_rejects(
            [
                NewReject(
                    source=f"host:{feed.name}",
                    reference=report["file"],
                    reason=f"file changed after load: {reason}",
                    payload={k: v for k, v in report.items() if k != "rejected_at"},
                )
            ],
            run_id=run_id,
        )
        store.open_alert(
            ALERT_FILE_CHANGED,
            f"host feed {feed.name}: {report['file']} {reason}",
            subject=f"{feed.name}:{report['file']}",
        )
    log.warning(
        "host_file_changed_after_load",
        feed=feed.name,
        file=report["file"],
        moved_to=str(target),
        load_id=load_id,
        bytes_loaded=expected[0],
        bytes_now=current[0],
        run_id=run_id,
    )
    return "changed_after_load", target, reason


def _park(path: Path, dirs: HostDirs, report: dict[str, Any]) -> Path:
    """Move `path` to `rejects/` with `<name>.errors.json` (written first) beside it."""
    target = free_name(dirs.rejects, path.name)
    report["moved_to"] = target.name
    write_bytes_atomic(
        target.with_name(target.name + ".errors.json"),
        (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode(),
        overwrite=True,
    )
    os.replace(path, target)
    return target


def _refuse_file(
    store: Store,
    feed: Feed,
    path: Path,
    dirs: HostDirs,
    refused: FileRefused,
    file_info: dict[str, Any],
    run_id: str | None,
) -> LoadResult:
    """rejects/<name> + <name>.errors.json, one open reject row, an alert for the guard."""
    name = path.name
    target = free_name(dirs.rejects, name)
    report = {
        "file": name,
        "feed": feed.name,
        "reason": refused.reason,
        "details": refused.details,
        "sha256": file_info["sha256"],
        "size": file_info["size"],
        "rejected_at": iso(),
        "moved_to": target.name,
    }
    write_bytes_atomic(
        target.with_name(target.name + ".errors.json"),
        (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode(),
        overwrite=True,
    )
    with store.transaction():
        # The same bytes refused again (a crash before the move): one open reject is enough.
        seen = store.open_reject_with(f"host:{feed.name}", name, "sha256", file_info["sha256"])
        if seen is None:
            store.add_rejects(
                [
                    NewReject(
                        source=f"host:{feed.name}",
                        reference=name,
                        reason=f"file refused: {refused.reason}",
                        payload={k: v for k, v in report.items() if k != "rejected_at"},
                    )
                ],
                run_id=run_id,
            )
            host_files.record_refused(
                store,
                feed=feed.name,
                name=name,
                sha256=file_info["sha256"],
                size=file_info["size"],
                fmt=file_info["format"],
                mode=file_info["mode"],
                reason=refused.reason,
                at=iso(),
                run_id=run_id,
            )
        per_file = refused.alert_kind == ALERT_FILE_ERROR
        store.open_alert(
            refused.alert_kind,
            f"host feed {feed.name}: {name} refused: {refused.reason}",
            subject=f"{feed.name}:{name}" if per_file else feed.name,
        )
    os.replace(path, target)
    follow_umask(target)
    log.warning(
        "host_file_refused",
        feed=feed.name,
        file=name,
        reason=refused.reason,
        moved_to=str(target),
        run_id=run_id,
    )
    return LoadResult(feed.name, name, "rejected_file", moved_to=target, reason=refused.reason)


def load_inbox(
    store: Store,
    host_dir: Path,
    host_config: HostConfig,
    run_id: str | None,
    feeds: Sequence[str] | None = None,
    *,
    now: float | None = None,
    progress: Progress = no_progress,
) -> list[LoadResult]:
    """Load every settled inbox file of the enabled (or named) feeds, oldest first.

    One file's trouble never stops the others: a file that breaks the loader is
    moved to `rejects/` (see `load_file`); one that cannot even be moved there is
    reported (an alert, status `failed`) and the next file is loaded. Only the state
    DB's own trouble (locked, full) ends the run, leaving the files for the next.
    """
    options = host_options(host_config)
    dirs = HostDirs(host_dir).ensure()
    results = []

    def wanted(feed: str) -> bool:
        return (feeds is None or feed in feeds) and options.feed(feed).enabled

    for stray in scan_strays(host_dir, host_config.settle_time, now=now):
        if wanted(stray.feed):
            refuse = partial(_refuse_stray, store, stray, dirs, run_id)
            results.append(_guarded(store, stray.feed, stray.path, run_id, refuse))
    for item in scan_inbox(host_dir, host_config.settle_time, now=now):
        if not wanted(item.feed):
            continue
        load = partial(
            load_file,
            store,
            FEEDS[item.feed],
            item.path,
            options.feed(item.feed),
            run_id,
            host_dir=host_dir,
            batch_size=options.batch_size,
            progress=progress,
        )
        results.append(_guarded(store, item.feed, item.path, run_id, load))
    return results


def _guarded(
    store: Store, feed: str, path: Path, run_id: str | None, action: Callable[[], LoadResult]
) -> LoadResult:
    """Run `action`; an error other than the state DB's becomes an alert and a
    `failed` result, so the next file is still loaded."""
    try:
        return action()
    except Exception as exc:
        if store_trouble(exc):
            raise
        reason = f"could not be loaded nor moved to rejects/: {type(exc).__name__}: {exc}"
        new = store.open_alert(
            ALERT_FILE_ERROR,
            f"host feed {feed}: {path.name} {reason}",
            subject=f"{feed}:{path.name}",
        )
        if new:  # once, not at every scan while the trouble lasts
            log.exception("host_file_failed", feed=feed, file=path.name, run_id=run_id)
        return LoadResult(feed, path.name, "failed", reason=reason)


def _refuse_stray(
    store: Store, stray: StrayEntry, dirs: HostDirs, run_id: str | None
) -> LoadResult:
    """A symlink, FIFO or directory named like a feed file: moved (the entry itself,
    never opened or followed) to `rejects/` with the reason, so it is reported once."""
    what = stray.kind + (f" to {stray.target!r}" if stray.target is not None else "")
    reason = (
        f"not a regular file but a {what}: syncd never opens or follows one; "
        "write the file itself into inbox/ (under a temporary name, then rename it)"
    )
    report = {
        "file": stray.path.name,
        "feed": stray.feed,
        "reason": reason,
        "kind": stray.kind,
        "target": stray.target,
        "rejected_at": iso(),
    }
    target = _park(stray.path, dirs, report)
    store.open_alert(
        ALERT_FILE_REFUSED,
        f"host feed {stray.feed}: {stray.path.name} refused: {reason}",
        subject=stray.feed,
    )
    with store.transaction():
        store.add_rejects(
            [
                NewReject(
                    source=f"host:{stray.feed}",
                    reference=stray.path.name,
                    reason=f"file refused: {reason}",
                    payload={k: v for k, v in report.items() if k != "rejected_at"},
                )
            ],
            run_id=run_id,
        )
    log.warning(
        "host_inbox_entry_not_a_file",
        feed=stray.feed,
        file=stray.path.name,
        kind=stray.kind,
        target=stray.target,
        moved_to=str(target),
        run_id=run_id,
    )
    return LoadResult(stray.feed, stray.path.name, "not_a_file", moved_to=target, reason=reason)
