"""Bad records of Instock answers become rejects; shared by the Instock jobs.

A record that fails validation (see `syncd.connectors.instock.check_records`) is kept
in `rejects` with the request id of the answer it came in, its key, the bad field, the
reason and the raw record (secrets redacted), while the rest of its page is stored:
records listed = records stored + records rejected. A record that is still bad when it
is read again (every scan re-reads the whole inventory) does not open a second reject:
the open one is touched instead, so `rejects list` shows each bad record once;
once the record is read valid, its open reject is resolved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from syncd.connectors.instock import BadRecord
from syncd.jsontext import RawJson, canonical
from syncd.state import NewReject, Store


def reference(bad: BadRecord, key_field: str, request_id: str | None) -> str:
    """Key first, then where it came from: `article_id 42 (request R, item 3)`."""
    where = f"request {request_id or 'unknown'}, item {bad.index}"
    if bad.key is None:
        return f"record without a valid {key_field} ({where})"
    return f"{key_field} {bad.key} ({where})"


def bad_record_rejects(
    source: str, bad: Iterable[BadRecord], *, key_field: str, request_id: str | None
) -> tuple[NewReject, ...]:
    """The reject of each bad record: its key and where it came from, the bad field and the
    reason as validation found them, the raw record."""
    return tuple(
        NewReject(
            source,
            reference(record, key_field, request_id),
            record.reason,
            field=record.field,
            payload=RawJson(canonical(record.raw)),
        )
        for record in bad
    )


@dataclass(frozen=True)
class RefreshRejects:
    """A plan's change: add each reject, or touch its identical open twin (a record still
    bad when read again), under `run_id`."""

    rejects: tuple[NewReject, ...]
    run_id: str | None

    def apply(self, store: Store) -> None:
        for reject in self.rejects:
            store.refresh_or_add_reject(reject, run_id=self.run_id)


@dataclass(frozen=True)
class ResolveFixed:
    """A plan's change: resolve the open rejects of `source` whose record was read valid."""

    source: str
    key_field: str
    keys: tuple[str, ...]

    def apply(self, store: Store) -> None:
        resolve_fixed(store, self.source, self.key_field, self.keys)


def record_rejects(
    store: Store,
    source: str,
    bad: Iterable[BadRecord],
    *,
    key_field: str,
    request_id: str | None,
    run_id: str | None,
) -> int:
    """Record each bad record once (an identical open reject is touched, not repeated);
    call inside the transaction that stores the rest of the page. Returns how many."""
    rejects = bad_record_rejects(source, bad, key_field=key_field, request_id=request_id)
    RefreshRejects(rejects, run_id).apply(store)
    return len(rejects)


def resolve_fixed(store: Store, source: str, key_field: str, keys: Iterable[str]) -> int:
    """Resolve the open rejects of `source` whose record (by key) was just read valid;
    call inside the transaction that stores it. Returns how many were resolved."""
    open_rejects = store.find_rejects(source, ("open",))
    if not open_rejects:
        return 0
    fixed = set(keys)
    prefix = f"{key_field} "
    resolved = 0
    for row in open_rejects:
        reference = row["reference"]
        if (
            reference.startswith(prefix)
            and reference[len(prefix) :].split(" (request ")[0] in fixed
        ):
            store.resolve_reject(row["id"])
            resolved += 1
    return resolved
