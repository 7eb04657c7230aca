"""Reading one host file: its rows as staged values or bad rows, or the file refused whole.

Rows are read one at a time under bounds (a line of at most `MAX_LINE_CHARS`, a CSV
record of at most `MAX_RECORD_LINES` lines); a bad row is a `BadRow` (file line, field,
reason, the row as read) and reading goes on after it; a CSV record that cannot be
read is rejected by its first line and reading resumes at the next. A file that
cannot be read at all (not UTF-8, no usable header) raises `FileRefused`, naming the
line and, where it can tell, the likely encoding. JSON Lines records are also checked
for what the row models cannot see (repeated keys, numbers spelt out of range).
`syncd.host.inbox` stages what this yields.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from syncd.errors import SyncdError
from syncd.host.feeds.fields import Format
from syncd.host.feeds.merge import Accepted, Feed
from syncd.state.kinds import AlertKind

MAX_LINE_CHARS = 1 << 20  # a line (or CSV record) longer than this is rejected, not read
MAX_RECORD_LINES = 64  # lines one CSV record may span (quoted line breaks)
MAX_PAYLOAD_CHARS = 64 << 10  # what a reject row keeps of a bad row
# A rejected CSV row is kept as a JSON object of its columns, in file order.
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False)
# The alert kind of a file refused whole (unreadable, not a regular file).
ALERT_FILE_REFUSED: Final = "host_file_refused"


class FileRefused(SyncdError):
    """The file as a whole cannot be loaded; it goes to rejects/ with this reason,
    and an alert of `alert_kind` (one per feed, or per file for `host_file_error`).

    Under `SyncdError` so that one escaping the inbox's own handling still reaches the
    runner as a classified failure, not an unexpected one."""

    def __init__(
        self, reason: str, details: Any = None, *, alert_kind: AlertKind = ALERT_FILE_REFUSED
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details
        self.alert_kind = alert_kind


@dataclass(frozen=True)
class BadRow:
    """A row that is not loaded: its file line, field(s) and reason, the row as read
    (clipped) and, where it could be read, its key (column, value)."""

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
    judge: Callable[[int, list[str]], Accepted | BadRow],
) -> Iterator[Accepted | BadRow]:
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
        yield BadRow(line, None, reason, payload, _loose_key(feed, header, raw_line))


def _csv_rows(feed: Feed, path: Path) -> Iterator[Accepted | BadRow]:
    with _open_text(path) as text:
        lines = _Lines(_bounded_lines(text))
        reader = csv.reader(lines, strict=True)
        header = _csv_header(lines, reader, feed)
        plan = feed.csv_plan(header)
        model = feed.csv_model
        width = len(header)
        keep = feed.keeps_payload

        def judge(line: int, fields: list[str]) -> Accepted | BadRow:
            if len(fields) != width:
                raw = dict(zip(header, fields, strict=False))
                return BadRow(
                    line,
                    None,
                    f"expected {width} fields, found {len(fields)}" + _nul_hint(fields),
                    _clip(_PAYLOAD_JSON.encode(fields)),
                    feed.raw_key(raw),
                )
            if [cell.strip().lstrip("\ufeff") for cell in fields] == header:
                # Two exports joined, or a spreadsheet repeating its header: in a feed of
                # text columns this row would load as an article named "name".
                return BadRow(
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
                return BadRow(
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


def _jsonl_rows(feed: Feed, path: Path) -> Iterator[Accepted | BadRow]:
    model: type[BaseModel] = feed.json_model
    with _open_text(path) as text:
        for line, chunk in _bounded_lines(text):
            if chunk is None:
                yield BadRow(
                    line, None, f"line longer than {MAX_LINE_CHARS} characters", None, None
                )
                continue
            record = chunk.strip()
            if not record:
                continue  # a blank line
            raw, problems = _json_spelling(record)
            key = feed.raw_key(raw) if isinstance(raw, dict) else None
            if problems:
                fields = ",".join(dict.fromkeys(name for name, _ in problems if name))
                reason = "; ".join(f"{name}: {why}" if name else why for name, why in problems)
                yield BadRow(line, fields or None, reason, _clip(record), key)
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
                yield BadRow(line, field, reason, _clip(record), key)
                continue
            yield Accepted(line, row, _clip(record) if feed.keeps_payload else None)


def read_rows(feed: Feed, path: Path, fmt: Format) -> Iterator[Accepted | BadRow]:
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
