"""`syncd trace KEY`: every state DB row that mentions a key, as one timeline.

Two halves: read functions that turn rows into plain `TraceEvent`s (I/O, SQL here
and nowhere in the CLI), and `assemble`, a pure function that orders them. Equal
times are ordered by the stage of the loop (pulled before created before sent...),
so a chain whose steps share a timestamp still reads in causal order. Events from a
remote's clock (order status, moves) are placed at the time syncd recorded them, with the
remote's time in the details: two clocks never interleave the timeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from syncd.state.store import Store
from syncd.state.windows import ledger_row_of, scan_ledger_row

# The window ledger streams whose rows pulled records point at (by request id or scan).
DSORDER_STREAM = "dsorder.submitted"
INSTOCK_ORDERS_STREAM = "instock.orders"
MOVES_STREAM = "instock.moves"
INVENTORY_STREAM = "instock.inventory"

KeyType = Literal["dsorder-order", "instock-order", "article", "file", "move"]
KEY_TYPES: tuple[KeyType, ...] = ("dsorder-order", "instock-order", "file", "move", "article")

# Causal rank of each event kind: the tie-break for events with the same time.
STAGES: dict[str, int] = {
    "host.file": 0,
    "host.row": 1,
    "dsorder.pulled": 2,
    "dsorder.line": 3,
    "reject": 4,
    "hold": 5,
    "alert": 6,
    "intent.queued": 7,
    "intent.sent": 8,
    "intent.refused": 8,
    "instock.order": 9,
    "instock.listed": 9,
    "instock.synced": 9,
    "article.synced": 9,
    "instock.status": 10,
    "instock.ordertask": 11,
    "instock.event": 12,
    "move": 13,
    "inventory": 14,
    "host.outbox": 14,
    "fulfil": 15,
    "close": 16,
    "dsorder.closed": 17,
}


@dataclass(frozen=True)
class TraceEvent:
    """One thing that happened to the key: when (ISO-8601 UTC), what, and its row."""

    at: str
    event: str
    details: str
    source: str  # table:rowid, so the same row read twice is shown once
    data: dict[str, Any] = field(default_factory=dict, compare=False)
    # Where a pulled record came from: the remote's request id and its ledger row.
    origin: str = field(default="", compare=False)


def assemble(events: Iterable[TraceEvent]) -> list[TraceEvent]:
    """Order events by time, then by stage of the loop, then by source; drop repeats
    (one row found through two links) and events with no time."""
    seen: set[tuple[str, str]] = set()
    kept: list[TraceEvent] = []
    for ev in events:
        if not ev.at or (ev.source, ev.event) in seen:
            continue
        seen.add((ev.source, ev.event))
        kept.append(ev)
    return sorted(kept, key=lambda e: (instant_key(e.at), STAGES.get(e.event, 50), source_key(e)))


def source_key(event: TraceEvent) -> tuple[str, int, str]:
    """`outbox:7` before `outbox:10`: a row id compares as a number, not as text."""
    table, _, rest = event.source.partition(":")
    return (table, int(rest), "") if rest.isdigit() else (table, -1, rest)


def instant_key(at: str) -> str:
    """'2026-12-04T19:51:01Z' and '...T19:51:01.000Z' compare as the same instant."""
    text = at.rstrip("Z").replace("+00:00", "")
    if "." not in text:
        text += ".000"
    return text


def to_json(events: list[TraceEvent]) -> list[dict[str, Any]]:
    return [asdict(e) for e in events]


def lineage(
    store: Store, stream: str, request_id: str | None, run_id: str | None = None
) -> tuple[str, dict[str, Any] | None]:
    """Where a pulled record came from, as words, and its ledger row: the remote's request
    id of the answer it came in, and the window ledger row that lists it (or, past the
    ids a row keeps, the row of `run_id` that left ids out)."""
    if not request_id:
        return "request id not kept (stored before lineage was)", None
    row = ledger_row_of(store, stream, request_id, run_id)
    if row is None:
        return (
            f"request id {request_id}; no live ledger row of {stream} lists it "
            "(compacted, or its pull did not finish)",
            None,
        )
    what = "a page" if row["kind"] == "cursor" else row["kind"]
    return (
        f"request id {request_id}, ledger row {row['id']} ({stream} {what}, run {row['run_id']})",
        row,
    )


def _row_id(row: dict[str, Any] | None) -> int | None:
    return None if row is None else int(row["id"])


def _polled(request_id: str | None, what: str) -> str:
    """A record read by itself (no ledger row: polls follow orders, they cover no window)."""
    return f"{what}, request id {request_id}" if request_id else ""


def detect(store: Store, key: str) -> list[KeyType]:
    """The kinds of thing `key` names in this state DB, most specific first."""
    probes: dict[KeyType, str] = {
        "dsorder-order": "SELECT 1 FROM dsorder_orders WHERE order_id = ?",
        "instock-order": "SELECT 1 FROM instock_orders WHERE order_id = :k "
        "UNION SELECT 1 FROM instock_order_sync WHERE order_id = :k "
        "UNION SELECT 1 FROM host_orders WHERE order_id = :k",
        "file": "SELECT 1 FROM host_files WHERE name = ?",
        # Both by index: move_key leads the UNIQUE index, id is the rowid.
        "move": "SELECT 1 FROM instock_moves WHERE move_key = ? UNION ALL "
        "SELECT 1 FROM instock_moves WHERE id = ?",
        "article": "SELECT 1 FROM host_articles WHERE article_id = :k "
        "UNION SELECT 1 FROM instock_article_sync WHERE article_id = :k "
        "UNION SELECT 1 FROM instock_inventory WHERE article_id = :k",
    }
    found: list[KeyType] = []
    for kind in KEY_TYPES:
        sql = probes[kind]
        params: Any = {"k": key} if ":k" in sql else [key, _rowid(key)][: sql.count("?")]
        if store.query(sql, params):
            found.append(kind)
    return found


def _rowid(key: str) -> int:
    """A move id as the integer the rowid index needs (-1: not a number, matches none)."""
    return int(key) if key.isdigit() and len(key) < 19 else -1


def trace(store: Store, key: str, kind: KeyType) -> list[TraceEvent]:
    """Every event about `key` read as `kind`, in time order."""
    readers: dict[str, Any] = {
        "dsorder-order": _dsorder_order,
        "instock-order": _instock_order,
        "article": _article,
        "file": _file,
        "move": _move,
    }
    return assemble(readers[kind](store, key))


def _intents(store: Store, order_key: str) -> list[TraceEvent]:
    events = []
    for r in store.query(
        "SELECT * FROM outbox WHERE order_key = ? "
        "OR substr(idempotency_key, 1, length(?)) = ? ORDER BY id",
        [order_key, order_key + ":", order_key + ":"],
    ):
        src = f"outbox:{r['id']}"
        kind = r["kind"]
        what = f"{r['destination']} {kind} (intent {r['id']}, key {r['idempotency_key']})"
        events.append(TraceEvent(r["created_at"], "intent.queued", what, src, r))
        if r["status"] == "sent" and r["sent_at"]:
            event = {"fulfill": "fulfil", "close": "close"}.get(kind, "intent.sent")
            detail = (
                f"{r['destination']} {kind} sent (intent {r['id']}, {r['attempts']} attempt(s))"
            )
            if event == "fulfil":
                detail += ": " + _fulfil_totals(r["payload"])
            if r.get("request_ids"):
                detail += f"; request id {', '.join(json.loads(r['request_ids']))}"
            if r["result"]:
                detail += f"; answer {r['result']}"
            events.append(TraceEvent(r["sent_at"], event, detail, src, r))
        elif r["status"] in ("rejected", "dropped"):
            detail = (
                f"{r['destination']} {kind} {r['status']} (intent {r['id']}): {r['last_error']}"
            )
            events.append(TraceEvent(r["next_attempt_at"], "intent.refused", detail, src, r))
    return events


def _fulfil_totals(payload: str) -> str:
    try:
        lines = json.loads(payload).get("lines", [])
    except (ValueError, AttributeError):
        return "?"
    return ", ".join(
        f"line {ln.get('line_number')} {ln.get('quantity')}{' finished' if ln.get('finished') else ''}"
        for ln in lines
    )


def _rejects(store: Store, where: str, params: list[Any]) -> list[TraceEvent]:
    return [
        TraceEvent(
            r["created_at"],
            "reject",
            f"{r['source']} {r['reference']}: {r['field'] or '-'}: {r['reason']} [{r['status']}]",
            f"rejects:{r['id']}",
            r,
        )
        for r in store.query(f"SELECT * FROM rejects WHERE {where} ORDER BY id", params)
    ]


def _alerts(store: Store, subject: str) -> list[TraceEvent]:
    return [
        TraceEvent(
            r["opened_at"],
            "alert",
            f"{r['kind']}: {r['message']}"
            + (f" (resolved {r['resolved_at']})" if r["resolved_at"] else " (open)"),
            f"alerts:{r['id']}",
            r,
        )
        for r in store.query("SELECT * FROM alerts WHERE subject = ? ORDER BY id", [subject])
    ]


def _dsorder_order(store: Store, order_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    instock_id = None
    for r in store.query("SELECT * FROM dsorder_orders WHERE order_id = ?", [order_id]):
        instock_id = r["instock_order_id"]
        data = {k: v for k, v in r.items() if k != "raw"}
        origin, ledger = lineage(store, DSORDER_STREAM, r["request_id"])
        data["ledger_row"] = _row_id(ledger)
        events.append(
            TraceEvent(
                r["pulled_at"],
                "dsorder.pulled",
                f"DSOrder order {order_id} pulled (store {r['store_id']}, delivery "
                f"{r['delivery_date']}); now {r['state']}",
                f"dsorder_orders:{order_id}",
                data,
                origin,
            )
        )
        if r["state"] == "held" or r["hold_reason"]:
            events.append(
                TraceEvent(
                    r["updated_at"], "hold", r["hold_reason"] or "held", f"hold:{order_id}", data
                )
            )
        if r["closed_at"]:
            events.append(
                TraceEvent(
                    r["closed_at"], "dsorder.closed", "closed in DSOrder", f"closed:{order_id}"
                )
            )
        for ln in store.query(
            "SELECT * FROM dsorder_lines WHERE order_id = ? ORDER BY line_number", [order_id]
        ):
            detail = (
                f"line {ln['line_number']}: article {ln['article_id']} qty {ln['quantity']} -> "
                f"{ln['instock_line_id'] or '-'} [{ln['status']}]"
                + (f" {ln['reason']}" if ln["reason"] else "")
            )
            events.append(
                TraceEvent(
                    r["pulled_at"],
                    "dsorder.line",
                    detail,
                    f"dsorder_lines:{order_id}:{ln['line_number']}",
                    ln,
                )
            )
    events += _intents(store, f"order:{order_id}")
    events += _rejects(
        store,
        "reference = ? OR substr(reference, 1, length(?)) = ?",
        [f"order {order_id}", *[f"order {order_id} "] * 2],
    )
    events += _alerts(store, order_id)
    if instock_id:
        events += _instock_order(store, instock_id, with_dsorder=False)
    return events


def _instock_order(store: Store, order_id: str, with_dsorder: bool = True) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    if with_dsorder:
        for r in store.query(
            "SELECT order_id FROM dsorder_orders WHERE instock_order_id = ?", [order_id]
        ):
            events += _dsorder_order(store, r["order_id"])
    for r in store.query("SELECT * FROM host_orders WHERE order_id = ?", [order_id]):
        events.append(
            TraceEvent(
                r["loaded_at"],
                "host.row",
                f"host order {order_id} from {r['file']}:{r['line']} [{r['status']}]",
                f"host_orders:{order_id}",
                r,
            )
        )
    for r in store.query("SELECT * FROM instock_order_sync WHERE order_id = ?", [order_id]):
        detail = f"Instock order {order_id} {r['action']} from {r['source']}: {r['status']}"
        if r["reason"]:
            detail += f" ({r['reason']})"
        events.append(TraceEvent(r["updated_at"], "instock.synced", detail, f"sync:{order_id}", r))
    for r in store.query("SELECT * FROM instock_orders WHERE order_id = ?", [order_id]):
        if r["list_request_id"]:
            origin, ledger = lineage(store, INSTOCK_ORDERS_STREAM, r["list_request_id"])
            events.append(
                TraceEvent(
                    # listed when its page was stored (the row's end)
                    ledger["ended_at"] if ledger else r["updated_at"],
                    "instock.listed",
                    f"Instock order {order_id} ({r['kind']}) listed by Instock's orders list",
                    f"instock_listed:{order_id}",
                    {**r, "ledger_row": _row_id(ledger)},
                    origin,
                )
            )
        if r["order_status"]:
            events.append(
                TraceEvent(
                    r["updated_at"],
                    "instock.status",
                    f"Instock order {order_id} ({r['kind']}, placed {r['placed_at']}) status "
                    f"{r['order_status']} at {r['status_at']} (Instock's clock); fulfilled "
                    f"{r['fulfilled']}",
                    f"instock_status:{order_id}",
                    r,
                    _polled(r["status_request_id"], "status poll"),
                )
            )
    for r in store.query(
        "SELECT * FROM instock_ordertasks WHERE order_id = ? ORDER BY ordertask_id", [order_id]
    ):
        events.append(
            TraceEvent(
                r["updated_at"],
                "instock.ordertask",
                f"ordertask {r['ordertask_id']} {r['ordertask_status']}",
                f"instock_ordertasks:{r['ordertask_id']}",
                r,
                _polled(r["request_id"], "ordertask read"),
            )
        )
    for r in store.query(
        "SELECT * FROM instock_order_events WHERE order_id = ? ORDER BY id", [order_id]
    ):
        events.append(
            TraceEvent(
                r["created_at"],
                "instock.event",
                f"{r['kind']} {r['order_status']}"
                + (
                    f" line {r['line_id']} {r['fulfilled']}/{r['requested']}"
                    if r["line_id"]
                    else ""
                ),
                f"instock_order_events:{r['id']}",
                r,
            )
        )
    for r in store.query(
        "SELECT * FROM instock_moves WHERE order_id = ? ORDER BY move_timestamp, id", [order_id]
    ):
        events.append(_move_event(store, r))
    events += _intents(store, f"order:{order_id}")
    events += _host_outbox(store, order_id)
    events += _rejects(store, "substr(reference, -length(?)) = ?", [f" order:{order_id}"] * 2)
    events += _alerts(store, order_id)
    return events


def _host_outbox(store: Store, value: str) -> list[TraceEvent]:
    """Host outbox files (order status, moves) whose rows name `value` as a JSON string."""
    # instr: a literal, case-sensitive match (LIKE would take % and _ in an id as
    # wildcards and ignore case); as ASCII-escaped JSON and as UTF-8 JSON text.
    quoted, utf8 = json.dumps(value), json.dumps(value, ensure_ascii=False)
    rows = store.query(
        "SELECT id, kind, status, result, created_at, sent_at FROM outbox "
        "WHERE destination = 'host' AND (instr(payload, ?) > 0 OR instr(payload, ?) > 0) "
        "ORDER BY id",
        [quoted, utf8],
    )
    events = []
    for r in rows:
        try:
            name = json.loads(r["result"] or "{}").get("file") or "(not written yet)"
        except ValueError:
            name = "?"
        events.append(
            TraceEvent(
                r["sent_at"] or r["created_at"],
                "host.outbox",
                f"{r['kind'].removeprefix('file:')} row in host outbox file {name} "
                f"(intent {r['id']}, {r['status']})",
                f"outbox:{r['id']}",
                r,
            )
        )
    return events


def _move_event(store: Store, r: dict[str, Any]) -> TraceEvent:
    origin, ledger = lineage(store, MOVES_STREAM, r["request_id"], r["run_id"])
    return TraceEvent(
        r["pulled_at"],
        "move",
        f"move {r['id']} at {r['move_timestamp']}: {r['qty']} x {r['article_id']} {r['from_cell_id']} -> "
        f"{r['to_cell_id']} ({r['from_account_id']} -> {r['to_account_id']}) order "
        f"{r['order_id'] or '-'}; pulled {r['pulled_at']} by {r['run_id']}",
        f"instock_moves:{r['id']}",
        {**r, "ledger_row": _row_id(ledger)},
        origin,
    )


def _move(store: Store, key: str) -> list[TraceEvent]:
    rows = store.query(
        "SELECT * FROM instock_moves WHERE move_key = ? UNION "
        "SELECT * FROM instock_moves WHERE id = ? ORDER BY id",
        [key, _rowid(key)],
    )
    return [_move_event(store, r) for r in rows]


def _article(store: Store, article_id: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for r in store.query("SELECT * FROM host_articles WHERE article_id = ?", [article_id]):
        events.append(
            TraceEvent(
                r["loaded_at"],
                "host.row",
                f"host article {article_id} '{r['name']}' from {r['file']}:{r['line']} "
                f"(load {r['load_id']})",
                f"host_articles:{article_id}",
                r,
            )
        )
    for r in store.query("SELECT * FROM instock_article_sync WHERE article_id = ?", [article_id]):
        detail = f"pushed to Instock: {r['status']}" + (f" ({r['reason']})" if r["reason"] else "")
        events.append(
            TraceEvent(r["updated_at"], "article.synced", detail, f"article_sync:{article_id}", r)
        )
    for r in store.query("SELECT * FROM instock_inventory WHERE article_id = ?", [article_id]):
        scan = scan_ledger_row(store, INVENTORY_STREAM, r["scan"])
        origin = (
            f"scan {r['scan']}, ledger row {scan['id']} (ended {scan['ended_at']}, "
            f"{scan['pages']} pages, {scan['stored']} stored, hash {scan['content_hash']})"
            if scan
            else f"scan {r['scan']} (no live ledger row: in progress, or compacted)"
        )
        events.append(
            TraceEvent(
                r["updated_at"],
                "inventory",
                f"Instock stock free {r['free']} reserved {r['reserved']} registered "
                f"{r['registered']}, as last listed by scan {r['scan']}",
                f"instock_inventory:{article_id}",
                {**r, "ledger_row": scan["id"] if scan else None},
                origin,
            )
        )
    events += _intents(store, f"article:{article_id}")
    events += _rejects(
        store, HOST_ROW_OF_ARTICLE, [f"article {article_id}", article_id, article_id]
    )
    return events


# A host reject keeps its row as a JSON object of its columns (a readable row) or as the
# raw line (an unreadable one): the article is its `article_id` column, or a whole
# comma-separated cell of the line; never a substring ("12" is not "A123").
HOST_ROW_OF_ARTICLE = (
    "reference = ? OR (substr(source, 1, 5) = 'host:' AND CASE WHEN json_valid(payload) "
    "THEN json_extract(payload, '$.article_id') IS ? "
    "ELSE instr(',' || replace(replace(payload, '\"', ''), ' ', '') || ',', ',' || ? || ',') > 0 "
    "END)"
)


def _file(store: Store, name: str) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for r in store.query("SELECT * FROM host_files WHERE name = ? ORDER BY id", [name]):
        detail = (
            f"{r['feed']} file {name} {r['status']}: {r['rows_loaded']} rows loaded, "
            f"{r['rows_rejected']} rejected, {r['rows_changed']} changed"
            + (f" ({r['reason']})" if r["reason"] else "")
        )
        events.append(TraceEvent(r["loaded_at"], "host.file", detail, f"host_files:{r['id']}", r))
    for r in store.query(
        "SELECT order_id, file, line, status, loaded_at FROM host_orders WHERE file = ? ORDER BY line",
        [name],
    ):
        events.append(
            TraceEvent(
                r["loaded_at"],
                "host.row",
                f"line {r['line']}: order {r['order_id']} [{r['status']}]",
                f"host_orders:{r['order_id']}",
                r,
            )
        )
        events += _intents(store, f"order:{r['order_id']}")
    for table, key in (("host_articles", "article_id"), ("host_stock", "article_id")):
        for r in store.query(
            f"SELECT {key}, file, line, loaded_at FROM {table} WHERE file = ? ORDER BY line", [name]
        ):
            events.append(
                TraceEvent(
                    r["loaded_at"],
                    "host.row",
                    f"line {r['line']}: {table.removeprefix('host_')} {r[key]}",
                    f"{table}:{r[key]}:{r['line']}",
                    r,
                )
            )
            if table == "host_articles":
                events += _intents(store, f"article:{r[key]}")
    events += _rejects(
        store, "reference = ? OR substr(reference, 1, length(?)) = ?", [name, *[f"{name}:"] * 2]
    )
    return events
