"""Files syncd writes for the host: atomic, sequence-numbered, never overwritten.

The outbox destination "host" (`syncd.send.host`) writes one file per intent,
`outbox/<stream>-<intent id:010d>.<ext>`, through `write_atomic`: to a temporary
dot-name in the same directory, flushed and fsynced, linked into place (never
replacing an existing file), and the directory fsynced. The host inbox uses the
same writer for the files it sets aside.

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

from syncd.jsontext import canonical_unicode

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
        return canonical_unicode(value)
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


def digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def digest_rendered(rows: Sequence[Mapping[str, Any]], fmt: Format, columns: Any) -> str:
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
