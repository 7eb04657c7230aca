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
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ValidationError

from syncd.clock import iso
from syncd.config import HostConfig
from syncd.host.dirs import HostDirs
from syncd.host.feeds import (
    FEEDS,
    STAGE_REJECTS,
    Accepted,
    Feed,
    FeedOptions,
    Format,
    MergeContext,
    create_stage_rejects,
    drop_stage_rejects,
    host_options,
)
from syncd.host.outbox import write_bytes_atomic
from syncd.lifecycle import follow_umask
from syncd.state import NewReject, Store

log = structlog.get_logger("syncd.host")

EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
IGNORED_SUFFIXES = (".tmp", ".part", ".errors.json")
MAX_LINE_CHARS = 1 << 20  # a JSON Lines record longer than this is rejected, not read
MAX_PAYLOAD_CHARS = 64 << 10  # what a reject row keeps of a bad row
SAMPLE_ERRORS = 20  # row errors quoted in a refused file's errors.json
# A rejected CSV row is kept as a JSON object of its columns, in file order.
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False)

# deferred: the file changed while it was read (still being written); left for the next scan.
Status = Literal["archived", "rejected_file", "already_loaded", "deferred"]


@dataclass(frozen=True)
class InboxFile:
    feed: str
    path: Path
    format: Format
    size: int
    mtime: float


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


class FileRefused(Exception):
    """The file as a whole cannot be loaded; it goes to rejects/ with this reason."""

    def __init__(self, reason: str, details: Any = None, *, alert: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details
        self.alert = alert


# -- finding files ---------------------------------------------------------------


def classify(name: str) -> tuple[str, Format] | None:
    """(feed, format) of an inbox file name, or None when it is not a feed file."""
    if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
        return None
    stem, ext = os.path.splitext(name)
    fmt = EXTENSIONS.get(ext.lower())
    if fmt is None:
        return None
    for feed in FEEDS:
        rest = stem[len(feed) :]
        if stem.lower().startswith(feed) and (not rest or rest[0] in "-_."):
            return feed, fmt
    return None


def scan_inbox(host_dir: Path, settle_time: float, *, now: float | None = None) -> list[InboxFile]:
    """Settled feed files in `inbox/`, oldest first (by mtime, then name).

    Ignored: dot files, `*.tmp`/`*.part`, names that match no feed, and files
    modified less than `settle_time` seconds ago (the host may still be writing).
    """
    inbox = HostDirs(host_dir).inbox
    if not inbox.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            kind = classify(entry.name)
            if kind is None or not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            if now - stat.st_mtime < settle_time:
                continue
            found.append(InboxFile(kind[0], Path(entry.path), kind[1], stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda f: (f.mtime, f.path.name))


# -- reading files -----------------------------------------------------------------


@dataclass(frozen=True)
class _Bad:
    line: int
    field: str | None
    reason: str
    payload: str | None
    key: tuple[str, str] | None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_PAYLOAD_CHARS else text[:MAX_PAYLOAD_CHARS] + "…[cut]"


_NAMED = re.compile(r"^([a-z_][\w.]*(?:, [a-z_][\w.]*)*): (.*)$", re.S)


def describe(exc: ValidationError, name_of: Any = None) -> tuple[str | None, str]:
    """(field(s), reason) of a row's validation errors, named as the file names them."""
    fields: list[str] = []
    reasons: list[str] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        name = name_of(loc) if name_of else ".".join(str(p) for p in loc)
        message = error["msg"].removeprefix("Value error, ")
        named = _NAMED.match(message)
        if not name and named:
            # A row-level check names its field(s) first: "qty: required on a create row".
            name, message = named.group(1), named.group(2)
        value = error.get("input")
        if error["type"] not in ("missing", "extra_forbidden", "json_invalid") and isinstance(
            value, str | int | float | bool
        ):
            shown = repr(value)
            message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        if error["type"] == "missing":
            message = "required"
        if name and name not in fields:
            fields.append(name)
        reasons.append(f"{name}: {message}" if name else message)
    return (",".join(fields) or None), "; ".join(reasons)


def _open_text(path: Path) -> Any:
    # utf-8-sig: a BOM (as Excel writes) is not part of the first column name.
    return path.open(encoding="utf-8-sig", errors="strict", newline="")


def _csv_header(reader: Any, feed: Feed) -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise FileRefused("empty file: no header row") from None
    except csv.Error as exc:
        raise FileRefused(f"header row is not valid CSV: {exc}") from None
    problems = feed.check_header(header)
    if problems:
        raise FileRefused(
            "wrong header: " + "; ".join(problems),
            {"header": header, "required": sorted(feed.csv_required)},
        )
    return header


def _csv_rows(feed: Feed, path: Path) -> Iterator[Accepted | _Bad]:
    with _open_text(path) as text:
        reader = csv.reader(text, strict=True)
        header = _csv_header(reader, feed)
        plan = feed.csv_plan(header)
        model = feed.csv_model
        width = len(header)
        keep = feed.keeps_payload
        start = reader.line_num + 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield _Bad(start, None, f"not valid CSV: {exc}", None, None)
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not fields:
                continue  # a blank line
            if len(fields) != width:
                raw = dict(zip(header, fields, strict=False))
                yield _Bad(
                    line,
                    None,
                    f"expected {width} fields, found {len(fields)}",
                    _clip(_PAYLOAD_JSON.encode(fields)),
                    feed.raw_key(raw),
                )
                continue
            data: dict[str, Any] = {}
            for index, name, nested in plan:
                value = fields[index]
                if not value or value.isspace():
                    continue  # an empty cell: not given
                if nested is None:
                    data[name] = value
                else:
                    data.setdefault(name, {})[nested] = value
            try:
                row = model.model_validate(data)
            except ValidationError as exc:
                raw = dict(zip(header, fields, strict=True))
                field, reason = describe(exc, feed.csv_field_name)
                yield _Bad(line, field, reason, _clip(_PAYLOAD_JSON.encode(raw)), feed.raw_key(raw))
                continue
            if keep:
                yield Accepted(
                    line, row, _clip(_PAYLOAD_JSON.encode(dict(zip(header, fields, strict=True))))
                )
            else:
                yield Accepted(line, row)


def _bounded_lines(text: Any) -> Iterator[tuple[int, str | None]]:
    """(line number, line) pairs; None for a line too long to read whole."""
    number = 0
    while True:
        chunk = text.readline(MAX_LINE_CHARS + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > MAX_LINE_CHARS and not chunk.endswith(("\n", "\r")):
            while True:  # skip the rest of it without holding it
                more = text.readline(MAX_LINE_CHARS)
                if not more or more.endswith(("\n", "\r")):
                    break
            yield number, None
            continue
        yield number, chunk


def _jsonl_rows(feed: Feed, path: Path) -> Iterator[Accepted | _Bad]:
    model: type[BaseModel] = feed.json_model
    with _open_text(path) as text:
        for line, chunk in _bounded_lines(text):
            if chunk is None:
                yield _Bad(line, None, f"line longer than {MAX_LINE_CHARS} characters", None, None)
                continue
            record = chunk.strip()
            if not record:
                continue  # a blank line
            try:
                row = model.model_validate_json(record, strict=True)
            except ValidationError as exc:
                field, reason = describe(exc)
                try:
                    raw = json.loads(record)
                except ValueError:
                    raw = None
                key = feed.raw_key(raw) if isinstance(raw, dict) else None
                yield _Bad(line, field, reason, _clip(record), key)
                continue
            yield Accepted(line, row, _clip(record) if feed.keeps_payload else None)


def _read_rows(feed: Feed, path: Path, fmt: Format) -> Iterator[Accepted | _Bad]:
    rows = _csv_rows(feed, path) if fmt == "csv" else _jsonl_rows(feed, path)
    try:
        yield from rows
    except UnicodeDecodeError as exc:
        raise FileRefused(
            f"not UTF-8 text: {exc.reason} (byte 0x{exc.object[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes), streamed."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# -- loading -------------------------------------------------------------------------


def _free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`; when taken (hosts reuse names), `stem.<UTC time>[-n].ext`."""
    target = directory / name
    if not target.exists():
        return target
    stem, ext = os.path.splitext(name)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = directory / f"{stem}.{stamp}{ext}"
    n = 1
    while target.exists():
        n += 1
        target = directory / f"{stem}.{stamp}-{n}{ext}"
    return target


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _move(path: Path, directory: Path) -> Path:
    target = _free_name(directory, path.name)
    os.replace(path, target)
    follow_umask(target)
    return target


def _stage(
    store: Store, feed: Feed, rows: Iterable[Accepted | _Bad], fmt: Format, batch_size: int
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
                db.conn.executemany(
                    f"INSERT INTO {STAGE_REJECTS} (line, field, reason, payload, key1, key2) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    bad,
                )
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
    cursor = store.db.execute(
        f"SELECT line, field, reason, payload FROM {STAGE_REJECTS} ORDER BY line"
    )
    for line, field, reason, payload in cursor:
        yield NewReject(
            source=f"host:{feed}",
            reference=f"{name}:{line}",
            field=field,
            reason=reason,
            payload=payload,
        )


def _sample_errors(store: Store) -> list[dict[str, Any]]:
    return store.query(
        f"SELECT line, field, reason FROM {STAGE_REJECTS} ORDER BY line LIMIT {SAMPLE_ERRORS}"
    )


def load_file(
    store: Store,
    feed: Feed,
    path: Path,
    options: FeedOptions,
    run_id: str | None,
    *,
    host_dir: Path | None = None,
    batch_size: int = 5000,
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
    identity = _identity(path)
    sha256, size = file_digest(path)
    file_info = {"sha256": sha256, "size": size, "format": fmt, "mode": mode, "id": identity}
    try:
        return _load_new(store, feed, path, dirs, options, file_info, run_id, batch_size)
    except _AlreadyLoaded:
        return _archive_loaded(store, feed, path, dirs, sha256, bound)
    except _FileChanged:
        bound.warning("host_file_changed_while_read", hint="the host should write, then rename")
        return LoadResult(feed.name, path.name, "deferred", reason="file changed while being read")


def _archive_loaded(
    store: Store, feed: Feed, path: Path, dirs: HostDirs, sha256: str, bound: Any
) -> LoadResult:
    """A file loaded before (a crash kept it from moving): move it, load nothing again."""
    [done] = store.query(
        "SELECT * FROM host_files WHERE feed = ? AND name = ? AND sha256 = ? AND status = 'loaded'",
        [feed.name, path.name, sha256],
    )
    moved = _move(path, dirs.archive) if path.exists() else None
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
) -> LoadResult:
    """Load a file not loaded before (raises _AlreadyLoaded when it was)."""
    fmt, mode, size = file_info["format"], file_info["mode"], file_info["size"]
    if store.scalar(
        "SELECT 1 FROM host_files WHERE feed = ? AND name = ? AND sha256 = ? AND status = 'loaded'",
        [feed.name, path.name, file_info["sha256"]],
    ):
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
        return _load_staged(
            store, feed, path, dirs, options, mode, fmt, file_info, run_id, batch_size
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
) -> LoadResult:
    db = store.db
    name = path.name
    fraction = options.max_delete_fraction
    try:
        create_stage_rejects(db)
        feed.create_staging(db)
        started = time.monotonic()
        accepted, _ = _stage(store, feed, _read_rows(feed, path, fmt), fmt, batch_size)
        if _identity(path) != file_info["id"]:
            raise _FileChanged
        staged = time.monotonic()
        with store.transaction():
            now = iso()
            # First statement writes: the transaction holds the write lock from here on.
            cur = db.execute(
                "INSERT INTO host_files (feed, name, sha256, size, format, mode, status, "
                "loaded_at, run_id) VALUES (?, ?, ?, ?, ?, ?, 'loaded', ?, ?) "
                "ON CONFLICT DO NOTHING",
                [feed.name, name, file_info["sha256"], file_info["size"], fmt, mode, now, run_id],
            )
            if not cur.rowcount:  # pragma: no cover - two loads of one file raced
                raise _AlreadyLoaded
            ctx = MergeContext(load_id=int(cur.lastrowid or 0), file=name, mode=mode, now=now)
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
                            "rows_rejected": db.execute(
                                f"SELECT count(*) FROM {STAGE_REJECTS}"
                            ).fetchone()[0],
                            "max_delete_fraction": fraction,
                            "row_errors": _sample_errors(store),
                        },
                        alert=True,
                    )
            changed, deleted = feed.merge(db, ctx)
            rejected = store.add_rejects(_staged_rejects(store, feed.name, name), run_id=run_id)
            loaded = accepted - held_back
            db.execute(
                "UPDATE host_files SET rows_loaded = ?, rows_rejected = ?, rows_changed = ?, "
                "rows_deleted = ? WHERE id = ?",
                [loaded, rejected, changed, deleted, ctx.load_id],
            )
            store.resolve_alerts("host_feed_guard", subject=feed.name)
        committed = time.monotonic()
    finally:
        feed.drop_staging(db)
        drop_stage_rejects(db)
    moved = _move(path, dirs.archive)
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
    return LoadResult(feed.name, name, "archived", loaded, rejected, changed, deleted, moved)


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
    target = _free_name(dirs.rejects, name)
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
        seen = store.scalar(
            "SELECT id FROM rejects WHERE source = ? AND reference = ? AND status = 'open' "
            "AND json_extract(payload, '$.sha256') = ?",
            [f"host:{feed.name}", name, file_info["sha256"]],
        )
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
            store.db.execute(
                "INSERT INTO host_files (feed, name, sha256, size, format, mode, status, reason, "
                "loaded_at, run_id) VALUES (?, ?, ?, ?, ?, ?, 'rejected', ?, ?, ?)",
                [
                    feed.name,
                    name,
                    file_info["sha256"],
                    file_info["size"],
                    file_info["format"],
                    file_info["mode"],
                    refused.reason,
                    iso(),
                    run_id,
                ],
            )
        if refused.alert:
            store.open_alert(
                "host_feed_guard",
                f"host feed {feed.name}: {name} refused: {refused.reason}",
                subject=feed.name,
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
) -> list[LoadResult]:
    """Load every settled inbox file of the enabled (or named) feeds, oldest first."""
    options = host_options(host_config)
    HostDirs(host_dir).ensure()
    results = []
    for item in scan_inbox(host_dir, host_config.settle_time, now=now):
        feed_options = options.feed(item.feed)
        if (feeds is not None and item.feed not in feeds) or not feed_options.enabled:
            continue
        results.append(
            load_file(
                store,
                FEEDS[item.feed],
                item.path,
                feed_options,
                run_id,
                host_dir=host_dir,
                batch_size=options.batch_size,
            )
        )
    return results
