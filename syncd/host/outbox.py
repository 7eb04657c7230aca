"""Files syncd writes for the host: atomic, sequence-numbered, never overwritten.

A job records a file as an outbox intent (`host_file_intent`), in the
transaction of the diff that caused it; the sender hands it to
`HostOutboxDestination`, which writes `outbox/<stream>-<intent id:010d>.<ext>`:
to a temporary dot-name in the same directory, flushed and fsynced, linked into
place (never replacing an existing file), and the directory fsynced.

The name is a pure function of the intent, so a replay after a crash finds its
own file: same bytes -> `AlreadyDoneError` (done), different bytes ->
`PermanentError` (never overwrite). A local filesystem failure (EACCES, EROFS,
ENOSPC, the directory gone or replaced) is a `DestinationOutage`: the sender
retries it for as long as it lasts, never gives it up, and writes no later file
of the destination meanwhile, so a stream never has a gap. The host should
process each name once and may delete or move files it has read: a file it took
away before syncd recorded the send is written again under the same name, which
the host can recognise.

Shapes: JSON Lines (one compact JSON object per line, UTF-8) or CSV (UTF-8, a
header row, `\\n` line ends; empty for null, `true`/`false`, nested values as
JSON). CSV columns are the payload's `columns`, else the first row's keys.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from syncd.config import Settings
from syncd.errors import AlreadyDoneError, PermanentError
from syncd.host.dirs import HostDirs
from syncd.outbox import DestinationOutage, register_destination
from syncd.state import Intent, NewIntent

Format = Literal["csv", "jsonl"]
EXT: dict[str, str] = {"csv": "csv", "jsonl": "jsonl"}
STREAM = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
CHUNK_CHARS = 64 << 10


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    rows: int
    size: int
    sha256: str


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return str(value)


def render(
    rows: Iterable[Mapping[str, Any]], fmt: Format, columns: Sequence[str] | None = None
) -> Iterator[bytes]:
    """The file's bytes, in chunks; deterministic, so a replay renders the same bytes."""
    if fmt not in EXT:
        raise ValueError(f"unknown format {fmt!r} (csv or jsonl)")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n") if fmt == "csv" else None
    header: list[str] | None = list(columns) if columns is not None else None
    if writer is not None and header is not None:
        writer.writerow(header)
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValueError(f"a row must be an object, not {type(row).__name__}")
        if writer is None:
            buffer.write(
                json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
            )
        else:
            if header is None:
                header = list(row)
                writer.writerow(header)
            extra = [k for k in row if k not in header]
            if extra:
                raise ValueError(f"row has keys outside the CSV columns: {extra}")
            writer.writerow([_cell(row.get(k)) for k in header])
        if buffer.tell() >= CHUNK_CHARS:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()  # no rows and no columns: an empty file


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if `path` exists: nothing is ever overwritten
    except FileExistsError:
        tmp.unlink()
        raise
    except OSError:
        # A filesystem without hard links: check, then rename (the name is ours alone).
        if path.exists():
            tmp.unlink()
            raise FileExistsError(path) from None
        os.rename(tmp, path)
        return
    tmp.unlink()


def _write_chunks(path: Path, chunks: Iterable[bytes], *, overwrite: bool) -> tuple[int, str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        # Something that is not a directory holds the name: not "the file exists".
        raise NotADirectoryError(
            errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)
        ) from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("xb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite=overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return size, digest.hexdigest()


def write_atomic(
    path: Path,
    rows: Iterable[Mapping[str, Any]],
    fmt: Format,
    *,
    columns: Sequence[str] | None = None,
    overwrite: bool = False,
) -> WrittenFile:
    """Write rows as CSV or JSON Lines: temp name, fsync, link/rename, fsync the directory.

    Raises FileExistsError when `path` exists (unless `overwrite`); a reader never
    sees a half-written file under `path`.
    """
    counted = 0

    def counting() -> Iterator[Mapping[str, Any]]:
        nonlocal counted
        for row in rows:
            counted += 1
            yield row

    size, sha256 = _write_chunks(path, render(counting(), fmt, columns), overwrite=overwrite)
    return WrittenFile(path, counted, size, sha256)


def write_bytes_atomic(path: Path, data: bytes, *, overwrite: bool = False) -> WrittenFile:
    size, sha256 = _write_chunks(path, [data], overwrite=overwrite)
    return WrittenFile(path, 0, size, sha256)


def _digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_rendered(rows: Sequence[Mapping[str, Any]], fmt: Format, columns: Any) -> str:
    digest = hashlib.sha256()
    for chunk in render(rows, fmt, columns):
        digest.update(chunk)
    return digest.hexdigest()


def outbox_file_name(stream: str, intent_id: int, fmt: Format) -> str:
    return f"{stream}-{intent_id:010d}.{EXT[fmt]}"


STALE_TEMP_SECONDS = 600


def remove_stale_temp_files(directory: Path, *, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Delete `.<name>.<pid>.<hex>.tmp` files a crashed writer left behind.

    They are hidden and never renamed into place, so the host never reads them;
    one older than `older_than` seconds belongs to no live write.
    """
    removed = 0
    cutoff = time.time() - older_than
    for stray in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if stray.stat().st_mtime < cutoff:
                stray.unlink()
                removed += 1
    return removed


class HostOutboxDestination:
    """The sender's destination "host": one intent -> one file in `outbox/`."""

    def __init__(self, host_dir: Path) -> None:
        self.outbox = HostDirs(host_dir).outbox
        remove_stale_temp_files(self.outbox)

    def send(self, intent: Intent) -> Any:
        stream, fmt, rows, columns = _payload(intent)
        path = self.outbox / outbox_file_name(stream, intent.id, fmt)
        try:
            written = write_atomic(path, rows, fmt, columns=columns)
        except FileExistsError:
            return self._existing(path, rows, fmt, columns)
        except ValueError as exc:
            raise PermanentError(f"intent {intent.id}: {exc}", connector="host") from None
        except OSError as exc:
            raise _outage("write", path, exc) from None
        return {
            "file": path.name,
            "rows": written.rows,
            "bytes": written.size,
            "sha256": written.sha256,
        }

    @staticmethod
    def _existing(path: Path, rows: Sequence[Mapping[str, Any]], fmt: Format, columns: Any) -> Any:
        try:
            same = _digest_file(path) == _digest_rendered(rows, fmt, columns)
        except OSError as exc:
            raise _outage("read", path, exc) from None
        if same:
            raise AlreadyDoneError(
                f"{path.name} already written with this content", connector="host"
            )
        raise PermanentError(
            f"{path.name} exists with different content; it is never overwritten "
            "(was the state DB restored from an older copy?)",
            connector="host",
        )

    def close(self) -> None:
        return None


def _outage(action: str, path: Path, exc: OSError) -> DestinationOutage:
    """A local filesystem failure (EACCES, EROFS, ENOSPC, ...) is an outage of the host
    destination, not a fault of the intent: it is retried until the disk takes it."""
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    return DestinationOutage(
        f"cannot {action} {path}: {exc.strerror or exc} ({name})", connector="host"
    )


def _payload(intent: Intent) -> tuple[str, Format, list[Mapping[str, Any]], list[str] | None]:
    payload = intent.payload
    problems = []
    if not isinstance(payload, dict):
        raise PermanentError(f"intent {intent.id}: payload is not an object", connector="host")
    stream, fmt, rows = payload.get("stream"), payload.get("format"), payload.get("rows")
    columns = payload.get("columns")
    if not isinstance(stream, str) or not STREAM.match(stream):
        problems.append(f"stream {stream!r} is not a name like 'moves' ([a-z0-9_], up to 64)")
    if fmt not in EXT:
        problems.append(f"format {fmt!r} is not csv or jsonl")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        problems.append("rows must be a list of objects")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
    ):
        problems.append("columns must be a list of names")
    if problems:
        raise PermanentError(f"intent {intent.id}: " + "; ".join(problems), connector="host")
    return stream, fmt, rows, columns  # type: ignore[return-value]


def host_file_intent(
    stream: str,
    rows: Sequence[Mapping[str, Any]],
    fmt: Format,
    key: str,
    *,
    columns: Sequence[str] | None = None,
) -> NewIntent:
    """An outbox intent for one host file; files of one stream are written in order.

    `key` is the job's idempotency key (e.g. `moves:2026-11-23T10:00Z/10:15Z`):
    recording the same key twice queues one file.
    """
    if not STREAM.match(stream):
        raise ValueError(f"stream {stream!r} is not a name like 'moves' ([a-z0-9_], up to 64)")
    if fmt not in EXT:
        raise ValueError(f"format {fmt!r} is not csv or jsonl")
    payload: dict[str, Any] = {"stream": stream, "format": fmt, "rows": list(rows)}
    if columns is not None:
        payload["columns"] = list(columns)
    return NewIntent(
        destination="host",
        kind=f"file:{stream}",
        order_key=stream,
        idempotency_key=key,
        payload=payload,
    )


def host_destination(settings: Settings) -> HostOutboxDestination:
    """The destination factory: files go to `<settings.host_dir>/outbox/`."""
    return HostOutboxDestination(settings.host_dir)


def register() -> None:
    """Make the sender deliver destination "host" intents as outbox files."""
    register_destination("host", host_destination)
