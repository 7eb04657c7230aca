"""The `host` outbox destination: one intent -> one file in the host's `outbox/`.

A job records a file as an outbox intent (`host_file_intent`), in the
transaction of the diff that caused it; the sender hands it to
`HostOutboxDestination`, which writes `outbox/<stream>-<intent id:010d>.<ext>`
atomically (`syncd.host.outbox.write_atomic`).

The name is a pure function of the intent, so a replay after a crash finds its
own file: same bytes -> `AlreadyDoneError` (done), different bytes ->
`PermanentError` (never overwrite). A local filesystem failure (EACCES, EROFS,
ENOSPC, the directory gone or replaced) is a `DestinationOutage`: the sender
retries it for as long as it lasts, never gives it up, and writes no later file
of the destination meanwhile, so a stream never has a gap. The host should
process each name once and may delete or move files it has read: a file it took
away before syncd recorded the send is written again under the same name, which
the host can recognise.

An intent may carry its rows or name them: `rows_from` names a frozen range of rows
kept in the state DB (`instock_inventory_deltas` of a settled scan: `DeltaFile`), so
a job that queues hundreds of thousands of rows writes no copy of them into the
outbox. The sender has the destination `expand` such an intent (the rows read from
the state DB, in the order the file has them) before `send`, and `on_outcome`
releases the range in the transaction that marks the file written; a rejected file
keeps its rows (a retry renders the same bytes). Either way the file is the same.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from syncd.config import Settings
from syncd.errors import AlreadyDoneError, PermanentError
from syncd.host.dirs import HostDirs
from syncd.host.feeds.fields import Format
from syncd.host.feeds.options import host_options
from syncd.host.outbox import (
    EXT,
    STREAM,
    digest_file,
    digest_rendered,
    outbox_file_name,
    remove_stale_temp_files,
    write_atomic,
)
from syncd.send.base import DestinationOutage
from syncd.state import Intent, NewIntent, Store
from syncd.state.mirror import instock_inventory

DESTINATION = "host"


def host_format(settings: Settings, stream: str) -> Format:
    """`host.options.outbox_formats.<stream>`, else `host.options.outbox_format`."""
    return host_options(settings.host).outbox_format_for(stream)


def delta_file_intent(part: instock_inventory.DeltaFile, fmt: Format, key: str) -> NewIntent:
    """Like `host_file_intent` for a file of `inventory_deltas`, naming its rows (a frozen
    range of a settled scan's deltas) instead of carrying them."""
    intent = host_file_intent("inventory_deltas", [], fmt, key=key)
    payload = {"stream": "inventory_deltas", "format": fmt, "rows_from": part.as_json()}
    return dataclasses.replace(intent, payload=payload)


def _rows_from(intent: Intent) -> instock_inventory.DeltaFile | None:
    payload = intent.payload
    if not isinstance(payload, dict) or "rows_from" not in payload:
        return None
    try:
        return instock_inventory.DeltaFile.from_json(payload["rows_from"])
    except ValueError as exc:
        raise PermanentError(f"intent {intent.id}: {exc}", connector="host") from None


class HostOutboxDestination:
    """The sender's destination "host": one intent -> one file in `outbox/`."""

    def __init__(self, host_dir: Path) -> None:
        self.outbox = HostDirs(host_dir).outbox
        remove_stale_temp_files(self.outbox)

    def expand(self, store: Store, intent: Intent) -> Intent:
        """The intent with its rows, read from the state DB when it names them."""
        part = _rows_from(intent)
        if part is None:
            return intent
        try:
            rows = instock_inventory.delta_file_rows(store, part)
        except ValueError as exc:
            raise PermanentError(f"intent {intent.id}: {exc}", connector="host") from None
        return dataclasses.replace(intent, payload={**intent.payload, "rows": rows})

    def on_outcome(self, store: Store, intent: Intent, outcome: str, detail: object) -> None:
        """A written file's named rows are released with the record that it is written."""
        part = _rows_from(intent)
        if part is not None and outcome in ("sent", "already_done"):
            instock_inventory.ReleaseDeltaFile(part).apply(store)

    def send(self, intent: Intent) -> object:
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
            same = digest_file(path) == digest_rendered(rows, fmt, columns)
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
        destination=DESTINATION,
        kind=f"file:{stream}",
        order_key=stream,
        idempotency_key=key,
        payload=payload,
    )


def host_destination(settings: Settings) -> HostOutboxDestination:
    """The destination factory: files go to `<settings.host_dir>/outbox/`."""
    return HostOutboxDestination(settings.host_dir)
