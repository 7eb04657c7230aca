"""`instock.articles`: the host catalog -> Instock, only what changed.

Decide first, then act: every host article is compared with
`instock_article_sync` (what was last queued and what Instock last accepted)
by `plan_article`, a pure function. New articles are uploaded in bulks of at
most 1000, changed ones are updated one by one, and articles Instock cannot
take (serial-numbered, invalid id, no name) become rejects with the reason
instead of endless retries. An unchanged catalog plans nothing and so makes no
request. The host catalog is read in id order in chunks: memory does not grow
with its size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso
from syncd.config import Schedule
from syncd.connectors.instock import BULK_MAX, InstockClient, validate_article
from syncd.errors import PermanentError
from syncd.jobs.base import JobContext, JobSpec, take_retried_rejects
from syncd.jsontext import content_hash, text_hash
from syncd.readahead import read_ahead
from syncd.send.instock import DESTINATION, same_article
from syncd.state import NewIntent, NewReject, Store

REJECT_SOURCE = "instock:articles"
# The first-run catalog bootstrap: "cursor:<next page>" while it runs, "done" after.
BOOTSTRAP_STREAM = "instock.articles.bootstrap"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(BULK_MAX, ge=1, le=BULK_MAX, description="articles per bulk upload")
    bootstrap: bool = Field(
        True, description="on the first run, learn which host articles Instock already has"
    )


@dataclass(frozen=True)
class SyncRow:
    host_hash: str
    accepted_hash: str | None
    status: str


@dataclass(frozen=True)
class Action:
    kind: str  # "skip", "upload", "update", "refuse"
    reason: str = ""


def article_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """Instock's article from a host catalog row."""
    payload: dict[str, Any] = {
        "article_id": row["article_id"],
        "name": row["name"],
        "is_serial_numbered": bool(row["is_serial_numbered"]),
        "attributes": json.loads(row["attributes"] or "{}"),
    }
    # PUT needs the complete record, so dimensions are always sent ({} when unknown).
    payload["dimensions"] = to_instock_dimensions(row)
    return payload


_TO_METRES = {"mm": Decimal("0.001"), "cm": Decimal("0.01"), "m": Decimal(1)}


def to_instock_dimensions(row: Mapping[str, Any]) -> dict[str, str]:
    """Host dimensions in Instock's units: inches stay, mm/cm become metres."""
    uom = row.get("dim_uom")
    if not uom:
        return {}
    values = {k: str(row[f"dim_{k}"]) for k in ("x", "y", "z") if row.get(f"dim_{k}")}
    if uom in _TO_METRES:
        factor = _TO_METRES[uom]
        values = {k: format((Decimal(v) * factor).normalize(), "f") for k, v in values.items()}
        uom = "m"
    return {**values, "uom": uom}


def plan_article(payload: Mapping[str, Any], digest: str, sync: SyncRow | None) -> Action:
    """What to do with one host article, given what Instock last accepted."""
    if sync is not None:
        if sync.accepted_hash == digest:
            return Action("skip")  # Instock already has exactly this
        if sync.host_hash == digest and sync.status in ("queued", "refused"):
            return Action("skip")  # in flight, or refused until it changes or is retried
    reason = validate_article(payload)
    if reason:
        return Action("refuse", reason)
    if sync is None or sync.accepted_hash is None:
        return Action("upload")  # never accepted: create
    return Action("update")  # accepted before, content changed


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    _requeue_retried_rejects(ctx)
    if options.bootstrap:
        start = _bootstrap_start(ctx.store)
        if start is not None:
            _bootstrap(ctx, start)
    for batch in _host_batches(ctx.store, options.batch_size):
        ctx.check_stop()
        uploads: list[tuple[dict[str, Any], str]] = []
        intents: list[NewIntent] = []
        rejects: list[NewReject] = []
        marks: list[tuple[str, str, str, str | None]] = []
        for row in batch:
            payload = article_payload(row)
            digest = content_hash(payload)
            sync = (
                SyncRow(row["s_host_hash"], row["s_accepted_hash"], row["s_status"])
                if row["s_status"]
                else None
            )
            action = plan_article(payload, digest, sync)
            ctx.counts[action.kind] += 1
            if action.kind == "skip":
                continue
            if action.kind == "refuse":
                marks.append((payload["article_id"], digest, "refused", action.reason))
                rejects.append(
                    NewReject(
                        REJECT_SOURCE,
                        f"article {payload['article_id']}",
                        action.reason,
                        field=_field_of(action.reason),
                        payload=payload,
                    )
                )
            elif action.kind == "upload":
                marks.append((payload["article_id"], digest, "queued", None))
                uploads.append((payload, digest))
            else:
                marks.append((payload["article_id"], digest, "queued", None))
                intents.append(
                    NewIntent(
                        DESTINATION,
                        "articles.update",
                        f"article:{payload['article_id']}",
                        # The run id makes a re-plan (a retried reject, content that
                        # comes back) a new intent, not a duplicate key that is dropped.
                        f"article:{payload['article_id']}:{digest}:{ctx.run_id}",
                        {"article": payload, "hash": digest},
                    )
                )
        if uploads:
            intents.insert(0, _upload_intent(uploads, ctx.run_id))
        if not marks:
            continue
        with ctx.store.transaction():
            _mark(ctx.store, marks)
            ctx.counts["queued"] += ctx.store.add_intents(intents, run_id=ctx.run_id)
            ctx.counts["rejected"] += ctx.store.add_rejects(rejects, run_id=ctx.run_id)
    if ctx.counts["queued"]:
        ctx.wake_sender()


def _bootstrap_start(store: Store) -> str | None:
    """Where the bootstrap starts ("" = the top, else a cursor to resume at), or None.

    Its progress is a checkpoint stored with each page's records, so a crash mid-way
    resumes it instead of leaving the rest of the catalog to the upload path."""
    mark = store.get_checkpoint(BOOTSTRAP_STREAM)
    if mark is not None:
        return None if mark == "done" else mark.removeprefix("cursor:")
    if store.scalar("SELECT count(*) FROM instock_article_sync"):
        return None  # a state from before the bootstrap existed: it knows what it pushed
    if not store.scalar("SELECT count(*) FROM host_articles"):
        return None  # nothing to learn about yet: wait for the host catalog
    return ""


def _bootstrap(ctx: JobContext, cursor: str) -> None:
    """First run against a site that already has a catalog: read Instock's article list
    once and record which host articles it already holds, identical or not. Without
    this, each of them would be uploaded, refused as existing and resolved one by one."""
    store = ctx.store
    known = 0
    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()
        try:
            for page in read_ahead(client.article_pages(start_cursor=cursor or None)):
                ctx.check_stop()
                known += _bootstrap_page(store, page.items, page.next_cursor, page.has_more)
        except PermanentError as exc:
            if not cursor or exc.status != 400:
                raise
            # The stored cursor expired: learn the catalog again from the top.
            ctx.log.warning("articles_bootstrap_cursor_rejected", error=str(exc))
            store.set_checkpoint(BOOTSTRAP_STREAM, "cursor:", run_id=ctx.run_id)
            _bootstrap(ctx, "")
            return
    ctx.counts["bootstrapped"] += known
    ctx.log.info("articles_bootstrapped", known_in_instock=known)


def _bootstrap_page(store: Store, items: list[Any], next_cursor: str | None, has_more: bool) -> int:
    remote = {a["article_id"]: a for a in items}
    rows = []
    if remote:
        marks = ",".join("?" * len(remote))
        rows = store.query(
            f"SELECT * FROM host_articles WHERE article_id IN ({marks})", list(remote)
        )
    now = iso()
    records = []
    for row in rows:
        payload = article_payload(row)
        digest = content_hash(payload)
        same = same_article(remote[row["article_id"]], payload)
        # Identical: accepted as is. Different: "accepted" under another content,
        # so the plan sends an update instead of a create.
        records.append(
            (
                row["article_id"],
                digest if same else "",
                digest if same else "instock:differs",
                now,
            )
        )
    with store.transaction():
        store.db.conn.executemany(
            "INSERT INTO instock_article_sync (article_id, host_hash, accepted_hash, "
            "status, updated_at) VALUES (?, ?, ?, 'accepted', ?) "
            "ON CONFLICT (article_id) DO NOTHING",
            records,
        )
        position = f"cursor:{next_cursor}" if has_more and next_cursor else "done"
        store.set_checkpoint(BOOTSTRAP_STREAM, position)
    return len(records)


def _field_of(reason: str) -> str | None:
    for field in ("article_id", "is_serial_numbered", "name"):
        if field in reason or field.replace("_", "-") in reason:
            return field
    return "is_serial_numbered" if "serial" in reason else None


def _upload_intent(uploads: list[tuple[dict[str, Any], str]], run_id: str) -> NewIntent:
    ids = run_id + ";" + ",".join(f"{p['article_id']}:{h}" for p, h in uploads)
    key = text_hash(ids)
    return NewIntent(
        DESTINATION,
        "articles.upload",
        "articles.upload",
        f"articles.upload:{key}",
        {"articles": [p for p, _ in uploads], "hashes": {p["article_id"]: h for p, h in uploads}},
    )


def _host_batches(store: Store, size: int) -> Iterator[list[dict[str, Any]]]:
    last = ""
    while True:
        rows = store.query(
            "SELECT h.*, s.host_hash AS s_host_hash, s.accepted_hash AS s_accepted_hash, "
            "s.status AS s_status FROM host_articles h "
            "LEFT JOIN instock_article_sync s USING (article_id) "
            "WHERE h.article_id > ? ORDER BY h.article_id LIMIT ?",
            [last, size],
        )
        if not rows:
            return
        last = rows[-1]["article_id"]
        yield rows


def _mark(store: Store, marks: list[tuple[str, str, str, str | None]]) -> None:
    now = iso()
    store.db.conn.executemany(
        "INSERT INTO instock_article_sync (article_id, host_hash, status, reason, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET "
        "host_hash = excluded.host_hash, status = excluded.status, reason = excluded.reason, "
        "updated_at = excluded.updated_at",
        [(a, h, s, r, now) for a, h, s, r in marks],
    )


def _requeue_retried_rejects(ctx: JobContext) -> None:
    """`syncd rejects retry` on an article reject: plan that article again this run."""

    def forget(store: Store, reject: dict[str, Any]) -> None:
        store.db.execute(
            "UPDATE instock_article_sync SET host_hash = '', status = 'queued' "
            "WHERE article_id = ?",
            [reject["reference"].removeprefix("article ")],
        )

    take_retried_rejects(ctx, REJECT_SOURCE, forget)


SPEC = JobSpec(
    name="instock.articles",
    run=run,
    description="Upload new and changed host catalog articles to Instock",
    default_schedule=Schedule(interval=600),
    connectors=("instock",),
    options_model=Options,
)
