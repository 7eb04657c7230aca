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
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import re
import sqlite3
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from syncd.clock import iso
from syncd.config import HostConfig
from syncd.host.dirs import HostDirs
from syncd.host.feeds.fields import Format
from syncd.host.feeds.merge import (
    FEEDS,
    STAGE_REJECTS,
    Accepted,
    Feed,
    MergeContext,
    create_stage_rejects,
    drop_stage_rejects,
)
from syncd.host.feeds.options import FeedOptions, host_options
from syncd.host.outbox import write_bytes_atomic
from syncd.lifecycle import follow_umask
from syncd.logs import Logger
from syncd.progress import Progress, no_progress
from syncd.state import NewReject, Store
from syncd.state.kinds import AlertKind

log: Logger = structlog.get_logger("syncd.host")

EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
IGNORED_SUFFIXES = (".tmp", ".part", ".errors.json")
MAX_LINE_CHARS = 1 << 20  # a line (or CSV record) longer than this is rejected, not read
MAX_RECORD_LINES = 64  # lines one CSV record may span (quoted line breaks)
MAX_PAYLOAD_CHARS = 64 << 10  # what a reject row keeps of a bad row
SAMPLE_ERRORS = 20  # row errors quoted in a refused file's errors.json
# A rejected CSV row is kept as a JSON object of its columns, in file order.
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False)

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
# Alert kinds: a file refused whole (unreadable, not a regular file), one that broke
# the loader, one that changed after it was loaded, and the snapshot guard.
ALERT_FILE_REFUSED: Final = "host_file_refused"
ALERT_FILE_ERROR: Final = "host_file_error"
ALERT_FILE_CHANGED: Final = "host_file_changed"
ALERT_FEED_GUARD: Final = "host_feed_guard"


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
    """The file as a whole cannot be loaded; it goes to rejects/ with this reason,
    and an alert of `alert_kind` (one per feed, or per file for `host_file_error`)."""

    def __init__(
        self, reason: str, details: Any = None, *, alert_kind: AlertKind = ALERT_FILE_REFUSED
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details
        self.alert_kind = alert_kind


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
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed by the host since the listing: nothing to load
            if now - info.st_mtime < settle_time:
                continue
            found.append(InboxFile(kind[0], Path(entry.path), kind[1], info.st_size, info.st_mtime))
    return sorted(found, key=lambda f: (f.mtime, f.path.name))


@dataclass(frozen=True)
class StrayEntry:
    """An inbox entry with a feed file's name that is not a regular file."""

    feed: str
    path: Path
    kind: str  # "symlink", "FIFO", "directory", "socket", "device"
    target: str | None = None  # a symlink's target, as text (never followed)


def _entry_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def scan_strays(
    host_dir: Path, settle_time: float, *, now: float | None = None
) -> list[StrayEntry]:
    """Entries in `inbox/` named like a feed file that are not regular files
    (settled like files are). They are never opened or followed."""
    inbox = HostDirs(host_dir).inbox
    if not inbox.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            kind = classify(entry.name)
            if kind is None or entry.is_file(follow_symlinks=False):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if now - info.st_mtime < settle_time:
                continue
            what = _entry_kind(info.st_mode)
            target = None
            if what == "symlink":
                try:
                    target = os.readlink(entry.path)
                except OSError:
                    target = None
            found.append(StrayEntry(kind[0], Path(entry.path), what, target))
    return sorted(found, key=lambda e: e.path.name)


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


class _RecordTooLong(Exception):
    """A CSV record ran past MAX_RECORD_LINES lines or MAX_LINE_CHARS characters."""


class _LongLine(Exception):
    """A physical line longer than MAX_LINE_CHARS."""


class _Lines:
    """Physical lines for csv.reader, remembering those of the record being read.

    A record that cannot be read (an unbalanced quote, a quoted field that runs
    past the bound, a too-long line) is rejected by its FIRST line alone and its
    other lines are pushed back: reading resumes at the next line, so one stray
    quote costs one row, not the rest of the file.
    """

    def __init__(self, source: Iterator[tuple[int, str | None]]) -> None:
        self._source = source
        self._pending: deque[tuple[int, str | None]] = deque()
        self.taken: list[tuple[int, str | None]] = []
        self._chars = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        item = self._pending.popleft() if self._pending else next(self._source)
        self.taken.append(item)
        line = item[1]
        if line is None:
            raise _LongLine
        self._chars += len(line)
        # One line is bounded already (by _bounded_lines); a record of several by both.
        if len(self.taken) > 1 and (
            len(self.taken) > MAX_RECORD_LINES or self._chars > MAX_LINE_CHARS
        ):
            raise _RecordTooLong
        return line

    def start_record(self) -> None:
        self.taken = []
        self._chars = 0

    def resync(self) -> tuple[int, str | None]:
        """The failed record's first line; its other lines will be read again."""
        first, *rest = self.taken
        self._pending.extendleft(reversed(rest))
        self.taken = []
        return first


def _unreadable(exc: Exception, lines: int) -> str:
    """Why a record starting on some line could not be read (`lines`: how many it took)."""
    if isinstance(exc, _LongLine):
        if lines == 1:
            return f"line longer than {MAX_LINE_CHARS} characters"
        why = f"a quoted field runs into a line longer than {MAX_LINE_CHARS} characters"
    elif isinstance(exc, _RecordTooLong):
        why = (
            f"a quoted field is not closed within {MAX_RECORD_LINES} lines "
            f"or {MAX_LINE_CHARS} characters"
        )
    else:
        why = f"not valid CSV: {exc}"
    if lines > 1:
        # A quote opened here took in the lines after it: they are read again.
        why += (
            f" (a quote opened on this line is not closed; the {lines - 1} line(s) "
            "after it are read on their own)"
        )
    return why


def _nul_hint(texts: Sequence[str]) -> str:
    """A note for a line holding NUL bytes: what a file cut short by a crash or a full disk
    often ends with (blocks the file system allocated, never written)."""
    if any("\x00" in text for text in texts):
        return " (the line holds NUL bytes: was the file cut short by a crash or a full disk?)"
    return ""


def _loose_key(feed: Feed, header: Sequence[str], line: str | None) -> tuple[str, str] | None:
    """The key of an unreadable line, read leniently, so a snapshot keeps that key's row."""
    if not line:
        return None
    try:
        cells = next(csv.reader([line]), [])
    except csv.Error:
        return None
    return feed.raw_key(dict(zip(header, (c.strip() for c in cells), strict=False)))


_UNREADABLE = (csv.Error, _LongLine, _RecordTooLong)


def _csv_header(lines: _Lines, reader: Any, feed: Feed) -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise FileRefused("empty file: no header row") from None
    except _UNREADABLE as exc:
        raise FileRefused(
            f"header row is not valid CSV: {_unreadable(exc, len(lines.taken))}"
        ) from None
    problems = feed.check_header(header)
    if problems and len(header) == 1:
        for mark, name in ((";", "';'"), ("\t", "tab")):
            if mark in header[0]:
                # An Excel "CSV" in a locale whose list separator is ';', or a tab export.
                problems.append(
                    f"the header holds no ',' but {name}: syncd reads comma-separated files "
                    '(in Excel, save as "CSV UTF-8 (Comma delimited)")'
                )
                break
    if problems:
        raise FileRefused(
            "wrong header: " + "; ".join(problems),
            {"header": header, "required": sorted(feed.csv_required)},
        )
    return header


def _csv_records(
    feed: Feed,
    lines: _Lines,
    reader: Any,
    header: list[str],
    judge: Callable[[int, list[str]], Accepted | _Bad],
) -> Iterator[Accepted | _Bad]:
    """Every record after the header, judged; a record that cannot be read is
    rejected by its first line and reading resumes at the next line.

    A record that spans lines (a quoted line break) must also be valid: if it is
    not, its quote may be a stray one that took in the lines after it, so its first
    line is rejected and those lines are read again on their own.
    """
    width = len(header)
    while True:
        lines.start_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _UNREADABLE as exc:
            reason = _unreadable(exc, len(lines.taken))
        else:
            if all(not cell or cell.isspace() for cell in cells):
                continue  # a blank line, or only separators (a spreadsheet's empty row)
            spanned = len(lines.taken)
            if spanned == 1:
                yield judge(lines.taken[0][0], cells)
                continue
            if len(cells) == width:
                verdict = judge(lines.taken[0][0], cells)
                if isinstance(verdict, Accepted):
                    yield verdict
                    continue
                reason = (
                    f"{verdict.reason} (this row runs over {spanned} lines through a quoted "
                    f"line break; in case its quote is a stray one, the {spanned - 1} line(s) "
                    "after it are read on their own)"
                )
            else:
                reason = (
                    f"expected {width} fields; a quote opened on this line is not closed where "
                    f"it should be (the {spanned - 1} line(s) after it are read on their own)"
                )
        line, raw_line = lines.resync()
        reader = csv.reader(lines, strict=True)  # a fresh parser state
        payload = None if raw_line is None else _clip(raw_line.rstrip("\r\n"))
        yield _Bad(line, None, reason, payload, _loose_key(feed, header, raw_line))


def _csv_rows(feed: Feed, path: Path) -> Iterator[Accepted | _Bad]:
    with _open_text(path) as text:
        lines = _Lines(_bounded_lines(text))
        reader = csv.reader(lines, strict=True)
        header = _csv_header(lines, reader, feed)
        plan = feed.csv_plan(header)
        model = feed.csv_model
        width = len(header)
        keep = feed.keeps_payload

        def judge(line: int, fields: list[str]) -> Accepted | _Bad:
            if len(fields) != width:
                raw = dict(zip(header, fields, strict=False))
                return _Bad(
                    line,
                    None,
                    f"expected {width} fields, found {len(fields)}" + _nul_hint(fields),
                    _clip(_PAYLOAD_JSON.encode(fields)),
                    feed.raw_key(raw),
                )
            if [cell.strip().lstrip("\ufeff") for cell in fields] == header:
                # Two exports joined, or a spreadsheet repeating its header: in a feed of
                # text columns this row would load as an article named "name".
                return _Bad(
                    line,
                    None,
                    "the header row again (were two files joined into one?)",
                    _clip(_PAYLOAD_JSON.encode(fields)),
                    None,
                )
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
                return _Bad(
                    line, field, reason, _clip(_PAYLOAD_JSON.encode(raw)), feed.raw_key(raw)
                )
            if keep:
                payload = _clip(_PAYLOAD_JSON.encode(dict(zip(header, fields, strict=True))))
                return Accepted(line, row, payload)
            return Accepted(line, row)

        yield from _csv_records(feed, lines, reader, header, judge)


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


# -- JSON Lines: the spelling checks the row models cannot make ------------------------


@dataclass(frozen=True)
class _BadNumber:
    """A JSON number token outside the grammar, kept with its text."""

    text: str
    reason: str


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that repeats a key (json.loads would keep the last silently)."""

    dups: tuple[str, ...] = ()


def _number_token(text: str) -> Any:
    if "e" in text or "E" in text:
        return _BadNumber(text, "a number in exponent notation: write it out (e.g. 1000, 0.005)")
    if Decimal(repr(float(text))) != Decimal(text):
        return _BadNumber(
            text, "more significant digits than a JSON number keeps exactly: give it as a string"
        )
    return None  # fine; the row model reads the value itself


def _constant_token(text: str) -> Any:
    return _BadNumber(text, f"{text} is not a JSON number")


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    dups = []
    for key, _ in pairs:
        if key in seen and key not in dups:
            dups.append(key)
        seen.add(key)
    marked = _DuplicateKeys(obj)
    marked.dups = tuple(dups)
    return marked


def _spelling_problems(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field, reason) for every duplicated key and badly spelt number in a record."""
    if isinstance(value, dict):
        for key in getattr(value, "dups", ()):
            name = f"{path}{key}"
            yield name, f"key {key!r} appears more than once in one object (which one is meant?)"
        for key, item in value.items():
            yield from _spelling_problems(item, f"{path}{key}.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _spelling_problems(item, f"{path}{index}.")
    elif isinstance(value, _BadNumber):
        name = path.rstrip(".")
        yield name, f"{value.reason} (got {value.text})"


def _json_spelling(record: str) -> tuple[Any, list[tuple[str, str]]]:
    """The record read with Python's json (None when it is not JSON) and its problems."""
    try:
        raw = json.loads(
            record,
            parse_float=_number_token,
            parse_constant=_constant_token,
            object_pairs_hook=_object_pairs,
        )
    except (ValueError, RecursionError):
        return None, []
    return raw, list(_spelling_problems(raw))


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
            raw, problems = _json_spelling(record)
            key = feed.raw_key(raw) if isinstance(raw, dict) else None
            if problems:
                fields = ",".join(dict.fromkeys(name for name, _ in problems if name))
                reason = "; ".join(f"{name}: {why}" if name else why for name, why in problems)
                yield _Bad(line, fields or None, reason, _clip(record), key)
                continue
            try:
                row = model.model_validate_json(record, strict=True)
            except ValidationError as exc:
                field, reason = describe(exc)
                reason += _nul_hint([record])
                if not isinstance(raw, dict) and record[:1] in "[{" and record[-1:] in ",]":
                    # A JSON array (or a pretty-printed list of objects) given as JSON Lines.
                    reason += (
                        " (JSON Lines holds one object per line, with no enclosing [ ] "
                        "and no ',' between lines)"
                    )
                yield _Bad(line, field, reason, _clip(record), key)
                continue
            yield Accepted(line, row, _clip(record) if feed.keeps_payload else None)


def read_rows(feed: Feed, path: Path, fmt: Format) -> Iterator[Accepted | _Bad]:
    """Each line of `path` parsed for `feed`: a row, or a bad line with its reason
    (a file that is not UTF-8 raises FileRefused)."""
    rows = _csv_rows(feed, path) if fmt == "csv" else _jsonl_rows(feed, path)
    try:
        yield from rows
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> FileRefused:
    """The refusal of a file that is not UTF-8, naming the line and byte where it stops
    being UTF-8 (the text reader decodes ahead, so its own error cannot say)."""
    where = _first_not_utf8(path)
    line, byte = where if where else (None, exc.object[exc.start])
    with path.open("rb") as fh:
        start = fh.read(2)
    if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        guess = "it is UTF-16, as Excel's 'Unicode Text' writes"
    else:
        guess = "perhaps Windows-1252 or Latin-1, as some exports write"
    at = f"line {line}: " if line else ""
    return FileRefused(
        f"not UTF-8 text: {at}byte 0x{byte:02x} is not UTF-8 ({guess}); save the file as UTF-8",
        {"line": line, "byte": f"0x{byte:02x}"},
    )


def _first_not_utf8(path: Path) -> tuple[int, int] | None:
    """(line number, byte) of the first byte that is not UTF-8; line breaks counted as the
    reader counts them (LF, CRLF, lone CR)."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line, last = 1, b""
    with path.open("rb") as fh:
        while True:
            block = fh.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                # exc.object: at most 3 bytes held over from the last block (no line
                # break among them), then this block.
                head = exc.object[: exc.start]
                return line + _line_breaks(head, last), exc.object[exc.start]
            if not block:
                return None
            line += _line_breaks(block, last)
            last = block[-1:]


def _line_breaks(data: bytes, before: bytes) -> int:
    breaks = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    return breaks - 1 if before == b"\r" and data.startswith(b"\n") else breaks


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


Identity = tuple[int, int, int, int]


def _identity(path: Path) -> Identity:
    """(size, mtime, inode, device): a file that changed or was replaced differs."""
    info = path.stat(follow_symlinks=False)
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev


def _identity_now(path: Path) -> Identity | None:
    try:
        return _identity(path)
    except FileNotFoundError:
        return None


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


def move_file(path: Path, directory: Path) -> Path:
    """Move `path` into `directory` under a name not yet taken there; returns the new path."""
    target = _free_name(directory, path.name)
    os.replace(path, target)
    follow_umask(target)
    return target


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
        file_info["id"] = _identity(path)
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
    [done] = store.query(
        "SELECT * FROM host_files WHERE feed = ? AND name = ? AND sha256 = ? AND status = 'loaded'",
        [feed.name, path.name, sha256],
    )
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
                        alert_kind=ALERT_FEED_GUARD,
                    )
            changed, deleted = feed.merge(db, ctx)
            rejected = store.add_rejects(_staged_rejects(store, feed.name, name), run_id=run_id)
            loaded = accepted - held_back
            db.execute(
                "UPDATE host_files SET rows_loaded = ?, rows_rejected = ?, rows_changed = ?, "
                "rows_deleted = ? WHERE id = ?",
                [loaded, rejected, changed, deleted, ctx.load_id],
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
    current = _identity_now(path)
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
        after = _identity_now(moved)
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
    target = _free_name(dirs.rejects, path.name)
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
