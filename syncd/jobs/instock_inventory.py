"""`instock.inventory`: mirror Instock stock, send deltas and a reconciliation to the host.

A scan walks the whole inventory list by cursor. Each page is one transaction:
its rows go into the mirror, the rows that changed go into
`instock_inventory_deltas`, and the checkpoint `{scan, cursor}` moves to the
next page. A crash mid-scan resumes at the stored cursor; since the changed
rows were recorded with the mirror they updated, no delta is lost or doubled.

When the list ends, one transaction settles the scan: articles the list no
longer shows drop to zero (the API omits all-zero articles: absent means zero,
not deleted), the collected deltas are frozen under the scan's number and named,
a range of `file_chunk` at a time, by host outbox file intents (the host
destination renders each file from its range when it writes it, and releases
the range in the transaction that records the file written), the reconciliation
against host book stock is refreshed (a file only when it changed), and the
checkpoint moves to the next scan. An unchanged inventory writes no file.

Each listed record is validated on its own: a bad one (a quantity that is not
a whole non-negative number, no `article_id`) becomes a reject and the rest of
its page is stored. An article whose record was bad keeps its mirrored
quantities and counts as listed (it is not "absent", so it is not zeroed); a bad
record without a usable `article_id` could be any article, so that scan zeroes
nothing. A scan that would zero more than `max_delete_fraction` of the
non-zero mirror (an empty 200 answer, a truncated list) is refused: the mirror
is kept, nothing is sent, an alert is opened and the next run scans again.

Each settled scan is one window ledger row (stream `instock.inventory`, kind `scan`, its
number in `scan`): when it started and ended, its pages, records listed, stored and
rejected, the request ids of its pages and a hash of what it stored, so "the mirror as of
scan N" has an answer (every mirror row keeps the number of the scan that last listed
it). The tally rides in the checkpoint with the cursor, page by page, so a scan resumed
after a crash counts each page once; a refused scan leaves no ledger row.
"""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso
from syncd.config import Schedule
from syncd.connectors.instock import InstockClient, Page, inventory_rows
from syncd.errors import PermanentError, SyncdError
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.shared.instock_records import record_rejects, resolve_fixed
from syncd.readahead import read_ahead
from syncd.send.host import delta_file_intent, host_file_intent, host_format
from syncd.state import NewIntent
from syncd.state.mirror import instock_inventory as mirror
from syncd.state.windows import MAX_REQUEST_IDS, RecordWindow

STREAM = "instock.inventory.scan"
LEDGER_STREAM = "instock.inventory"  # its scans in the window ledger
QTY = ("free", "reserved", "registered")
REJECT_SOURCE = "instock:inventory"
GUARD_ALERT: Final = "instock_inventory_guard"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_chunk: int = Field(10_000, ge=1, le=200_000, description="rows per host file")
    reconcile: bool = Field(True, description="compare with host book stock after each scan")
    max_delete_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="refuse a scan that would zero more than this share of the non-zero mirror",
    )
    allow_mass_delete: bool = Field(
        False, description="accept a scan that zeroes more than max_delete_fraction (once)"
    )


class InventoryGuardError(SyncdError):
    """A scan would zero too much of the mirror; refused, mirror kept, alert open."""


@dataclass(frozen=True)
class Tally:
    """What the scan has read so far, for its ledger row. `digest` chains the pages:
    sha256(previous digest + the page's stored rows), the rows (article_id, free,
    reserved, registered) in list order, serialized by `marshal` format 2 (cheap, and the
    same bytes for the same values), so two scans that stored the same list hash alike."""

    started_at: str = ""
    pages: int = 0
    listed: int = 0
    stored: int = 0
    rejected: int = 0
    digest: str = ""
    request_ids: tuple[str, ...] = ()
    request_ids_more: int = 0


def tally_page(
    tally: Tally,
    rows: Sequence[mirror.StockRow],
    listed: int,
    rejected: int,
    request_id: str | None,
    now: str,
) -> Tally:
    """The tally after one more page (pure)."""
    digest = hashlib.sha256(tally.digest.encode() + marshal.dumps(list(rows), 2)).hexdigest()
    ids, more = tally.request_ids, tally.request_ids_more
    if request_id:
        if len(ids) < MAX_REQUEST_IDS:
            ids = (*ids, request_id)
        else:
            more += 1
    return Tally(
        tally.started_at or now,
        tally.pages + 1,
        tally.listed + listed,
        tally.stored + len(rows),
        tally.rejected + rejected,
        digest,
        ids,
        more,
    )


@dataclass(frozen=True)
class Position:
    """Where the scan stands: its number, the next cursor, how many records without a
    usable article_id it rejected so far (any of them makes "absent means zero" unsafe),
    and its tally for the ledger."""

    scan: int = 1
    cursor: str = ""
    unkeyed: int = 0
    tally: Tally = field(default_factory=Tally)


def load_position(raw: str | None) -> Position:
    """The checkpoint; a new store starts scan 1 at the top. A checkpoint written before
    the tally was kept starts an empty one (that scan's row counts from there)."""
    if not raw:
        return Position()
    data = json.loads(raw)
    t = data.get("tally") or {}
    tally = Tally(
        str(t.get("started_at", "")),
        int(t.get("pages", 0)),
        int(t.get("listed", 0)),
        int(t.get("stored", 0)),
        int(t.get("rejected", 0)),
        str(t.get("digest", "")),
        tuple(str(r) for r in t.get("request_ids", ())),
        int(t.get("request_ids_more", 0)),
    )
    return Position(
        int(data["scan"]), str(data.get("cursor") or ""), int(data.get("unkeyed", 0)), tally
    )


def dump_position(position: Position) -> str:
    data: dict[str, Any] = {"scan": position.scan, "cursor": position.cursor}
    if position.unkeyed:
        data["unkeyed"] = position.unkeyed
    if position.tally.pages:
        t = position.tally
        data["tally"] = {
            "started_at": t.started_at,
            "pages": t.pages,
            "listed": t.listed,
            "stored": t.stored,
            "rejected": t.rejected,
            "digest": t.digest,
            "request_ids": list(t.request_ids),
            "request_ids_more": t.request_ids_more,
        }
    return json.dumps(data)


def scan_ledger_row(position: Position, run_id: str, now: str) -> RecordWindow:
    """The settled scan's ledger row: it covers its own span, from its first page to now."""
    t = position.tally
    started = t.started_at or now
    return RecordWindow(
        LEDGER_STREAM,
        "instock.inventory",
        run_id,
        "scan",
        started,
        now,
        window_from=started,
        window_to=now,
        pages=t.pages,
        listed=t.listed,
        stored=t.stored,
        rejected=t.rejected,
        content_hash=t.digest[:32] or None,
        request_ids=t.request_ids,
        request_ids_more=t.request_ids_more,
        scan=position.scan,
    )


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    position = load_position(store.get_checkpoint(STREAM))
    mirror.open_page_table(store)
    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()
        try:
            pages = client.inventory_pages(start_cursor=position.cursor or None)
            for page in read_ahead(pages):
                position = apply_page(ctx, position, page)
                ctx.progress("instock.inventory: stock records read", ctx.counts["pulled"])
                if page.has_more:
                    ctx.check_stop()
        except PermanentError as exc:
            if not position.cursor or exc.status != 400:
                raise
            # The stored cursor expired: start this scan again from the top.
            ctx.log.warning("inventory_cursor_rejected", error=str(exc), scan=position.scan)
            store.set_checkpoint(STREAM, dump_position(Position(position.scan)), run_id=ctx.run_id)
            run(ctx)
            return
    _settle_scan(ctx, position, options)


def apply_page(ctx: JobContext, position: Position, page: Page) -> Position:
    """Store one page's good records, reject its bad ones, move the cursor: one transaction."""
    store = ctx.store
    scan = position.scan
    rows, bad = inventory_rows(page.items)
    listed_bad = sorted({b.key for b in bad if b.key is not None})
    now = iso()
    with store.transaction():
        mirror.StorePage(scan, rows, listed_bad, now).apply(store)
        rejected = record_rejects(
            store,
            REJECT_SOURCE,
            bad,
            key_field="article_id",
            request_id=page.request_id,
            run_id=ctx.run_id,
        )
        ctx.counts["rejects_resolved"] += resolve_fixed(
            store, REJECT_SOURCE, "article_id", (row[0] for row in rows)
        )
        after = Position(
            scan,
            page.next_cursor or "" if page.has_more else "",
            position.unkeyed + sum(1 for b in bad if b.key is None),
            tally_page(position.tally, rows, len(page.items), rejected, page.request_id, now),
        )
        store.set_checkpoint(STREAM, dump_position(after), run_id=ctx.run_id)
    ctx.counts["pulled"] += len(page.items)
    ctx.counts["stored"] += len(rows)
    ctx.counts["rejected"] += rejected
    if bad:
        ctx.log.warning(
            "inventory_records_rejected",
            rejected=rejected,
            request_id=page.request_id,
            first=f"{bad[0].key or '?'}: {bad[0].field} {bad[0].reason}",
        )
    return after


def guard_refusal(existing: int, absent: int, options: Options) -> str | None:
    """Why zeroing `absent` of `existing` non-zero mirror rows is refused; None if allowed."""
    fraction = options.max_delete_fraction
    if not existing or absent <= fraction * existing or options.allow_mass_delete:
        return None
    return (
        f"the inventory list would zero {absent} of {existing} articles with stock "
        f"({absent / existing:.0%} > max_delete_fraction {fraction:g}); refused, the mirror "
        "is kept and nothing is sent. If Instock really is empty, set "
        'jobs."instock.inventory".options.allow_mass_delete = true for one run'
    )


def _settle_scan(ctx: JobContext, position: Position, options: Options) -> None:
    store = ctx.store
    scan = position.scan
    existing, absent = mirror.absent_counts(store, scan)
    refusal = guard_refusal(existing, absent, options)
    if refusal is not None and not position.unkeyed:
        # The scan's changes stay in instock_inventory_deltas; the next scan (same number,
        # from the top) adds to them, and the scan that passes sends them all.
        with store.transaction():
            store.set_checkpoint(STREAM, dump_position(Position(scan)), run_id=ctx.run_id)
        store.open_alert(GUARD_ALERT, refusal, subject="instock.inventory")
        ctx.counts["guard_refused"] += 1
        raise InventoryGuardError(refusal)
    with store.transaction():
        if position.unkeyed:
            ctx.log.warning("inventory_absent_kept", unkeyed_rejects=position.unkeyed, scan=scan)
            ctx.warnings.append(
                f"{position.unkeyed} inventory record(s) without a usable article_id were "
                "rejected: articles absent from this scan keep their quantities"
            )
        # Absent from the list means zero: those rows drop to zero, with a delta.
        # `absent` counted exactly the rows it would zero: none (the usual case) saves two
        # passes over the mirror.
        if absent:
            mirror.ZeroAbsent(scan, iso(), allowed=not position.unkeyed).apply(store)
        added = 0
        fmt = host_format(ctx.settings, "inventory_deltas")
        for chunk_no, part in enumerate(mirror.delta_files(store, scan, options.file_chunk), 1):
            # The intent names its share of the frozen deltas; the file is rendered from
            # them when it is written (and they are released then), never copied here.
            key = f"inventory_deltas:{scan}:{chunk_no}"
            added += store.add_intents([delta_file_intent(part, fmt, key)], run_id=ctx.run_id)
        deltas = mirror.delta_count(store, scan)
        mirror.PruneDeltas(scan).apply(store)
        if options.reconcile:
            for intent in _reconcile(ctx, scan, options):
                added += store.add_intents([intent], run_id=ctx.run_id)
        scan_ledger_row(position, ctx.run_id, iso()).apply(store)
        store.set_checkpoint(STREAM, dump_position(Position(scan + 1)), run_id=ctx.run_id)
        store.resolve_alerts(GUARD_ALERT, subject="instock.inventory")
    ctx.counts["deltas"] += deltas
    ctx.counts["queued"] += added


def _reconcile(ctx: JobContext, scan: int, options: Options) -> Iterator[NewIntent]:
    """Host book stock vs Instock on hand (free + reserved); a file only when it changed."""
    store = ctx.store
    if not mirror.host_stock_loaded(store):
        ctx.log.info("reconcile_skipped", reason="no host stock loaded yet")
        return
    changed, count = mirror.compare_with_host(store)
    ctx.counts["discrepancies"] = count
    if not changed:
        return
    mirror.StoreDiscrepancies(scan, iso()).apply(store)
    last, chunk_no = "", 0
    while True:
        rows = mirror.discrepancies(store, last, options.file_chunk)
        if not rows and chunk_no:
            return
        chunk_no += 1
        # An empty report is still written once: it says the discrepancies are gone.
        yield host_file_intent(
            "stock_discrepancies",
            rows,
            host_format(ctx.settings, "stock_discrepancies"),
            key=f"stock_discrepancies:{scan}:{chunk_no}",
        )
        if not rows:
            return
        last = rows[-1]["article_id"]


SPEC = JobSpec(
    name="instock.inventory",
    run=run,
    description="Mirror Instock inventory; host deltas and a reconciliation report",
    default_schedule=Schedule(interval=900),
    connectors=("instock",),
    options_model=Options,
)
