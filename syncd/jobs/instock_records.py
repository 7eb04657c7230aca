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

from syncd.clock import iso
from syncd.connectors.instock import BadRecord
from syncd.jsontext import canonical
from syncd.state import NewReject, Store


def reference(bad: BadRecord, key_field: str, request_id: str | None) -> str:
    """Key first, then where it came from: `article_id 42 (request R, item 3)`."""
    where = f"request {request_id or 'unknown'}, item {bad.index}"
    if bad.key is None:
        return f"record without a valid {key_field} ({where})"
    return f"{key_field} {bad.key} ({where})"


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
    count = 0
    now = iso()
    for record in bad:
        count += 1
        payload = canonical(record.raw)
        touched = store.db.execute(
            "UPDATE rejects SET updated_at = ?, run_id = ? WHERE id = (SELECT id FROM rejects "
            "WHERE source = ? AND status = 'open' AND field = ? AND reason = ? AND payload = ? "
            "LIMIT 1)",
            [now, run_id, source, record.field, record.reason, payload],
        ).rowcount
        if touched:
            continue
        # Through the store's helper, which redacts every text it writes: the reference
        # holds the remote's key and request id.
        store.add_rejects(
            [
                NewReject(
                    source=source,
                    reference=reference(record, key_field, request_id),
                    reason=record.reason,
                    field=record.field,
                    payload=payload,
                )
            ],
            run_id=run_id,
        )
    return count


def resolve_fixed(store: Store, source: str, key_field: str, keys: Iterable[str]) -> int:
    """Resolve the open rejects of `source` whose record (by key) was just read valid;
    call inside the transaction that stores it. Returns how many were resolved."""
    open_rejects = store.query(
        "SELECT id, reference FROM rejects WHERE source = ? AND status = 'open'", [source]
    )
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
