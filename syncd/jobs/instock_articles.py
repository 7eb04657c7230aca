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
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso
from syncd.config import Schedule
from syncd.connectors.instock import BULK_MAX, InstockClient, article_problem
from syncd.errors import PermanentError
from syncd.jobs.base import JobContext, JobSpec, take_retried_rejects
from syncd.jsontext import content_hash, text_hash
from syncd.readahead import read_ahead
from syncd.send.instock import DESTINATION, same_article
from syncd.state import NewIntent, NewReject, Store
from syncd.state.mirror.instock import (
    ArticleMark,
    ForgetArticle,
    KnownArticle,
    LearnArticles,
    MarkArticles,
    article_sync_is_empty,
    host_article_count,
    host_articles_with_sync,
)
from syncd.state.plan import Plan, apply_plan

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
    field: str | None = dc_field(default=None, compare=False)  # the refused field


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
    problem = article_problem(payload)
    if problem:
        return Action("refuse", problem[1], problem[0])
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
    total, planned_so_far = host_article_count(ctx.store), 0
    for batch in _host_batches(ctx.store, options.batch_size):
        ctx.check_stop()
        planned = plan_article_batch(batch, ctx.run_id, iso())
        ctx.counts.update(planned.actions)
        if planned.plan:
            applied = apply_plan(ctx.store, planned.plan, run_id=ctx.run_id)
            ctx.counts["queued"] += applied.intents
            ctx.counts["rejected"] += applied.rejects
        planned_so_far += len(batch)
        ctx.progress("instock.articles: host articles planned", planned_so_far, total)
    if ctx.counts["queued"]:
        ctx.wake_sender()


@dataclass(frozen=True)
class ArticleBatch:
    plan: Plan
    actions: Counter[str]  # how many articles got each action kind


def plan_article_batch(rows: Sequence[Mapping[str, Any]], run_id: str, now: str) -> ArticleBatch:
    """One chunk of the host catalog (rows of `host_articles_with_sync`): the sync marks,
    one bulk upload of the new articles, an update per changed one, a reject per refusal."""
    actions: Counter[str] = Counter()
    uploads: list[tuple[dict[str, Any], str]] = []
    intents: list[NewIntent] = []
    rejects: list[NewReject] = []
    marks: list[ArticleMark] = []
    for row in rows:
        payload = article_payload(row)
        digest = content_hash(payload)
        sync = (
            SyncRow(row["s_host_hash"], row["s_accepted_hash"], row["s_status"])
            if row["s_status"]
            else None
        )
        action = plan_article(payload, digest, sync)
        actions[action.kind] += 1
        article_id = payload["article_id"]
        if action.kind == "skip":
            continue
        if action.kind == "refuse":
            marks.append(ArticleMark(article_id, digest, "refused", action.reason))
            rejects.append(
                NewReject(
                    REJECT_SOURCE,
                    f"article {article_id}",
                    action.reason,
                    field=action.field,
                    payload=payload,
                )
            )
        elif action.kind == "upload":
            marks.append(ArticleMark(article_id, digest, "queued"))
            uploads.append((payload, digest))
        else:
            marks.append(ArticleMark(article_id, digest, "queued"))
            intents.append(
                NewIntent(
                    DESTINATION,
                    "articles.update",
                    f"article:{article_id}",
                    # The run id makes a re-plan (a retried reject, content that
                    # comes back) a new intent, not a duplicate key that is dropped.
                    f"article:{article_id}:{digest}:{run_id}",
                    {"article": payload, "hash": digest},
                )
            )
    if uploads:
        intents.insert(0, _upload_intent(uploads, run_id))
    if not marks:
        return ArticleBatch(Plan(), actions)
    plan = Plan(
        intents=tuple(intents),
        rejects=tuple(rejects),
        changes=(MarkArticles(tuple(marks), now),),
    )
    return ArticleBatch(plan, actions)


def _bootstrap_start(store: Store) -> str | None:
    """Where the bootstrap starts ("" = the top, else a cursor to resume at), or None.

    Its progress is a checkpoint stored with each page's records, so a crash mid-way
    resumes it instead of leaving the rest of the catalog to the upload path."""
    mark = store.get_checkpoint(BOOTSTRAP_STREAM)
    if mark is not None:
        return None if mark == "done" else mark.removeprefix("cursor:")
    if not article_sync_is_empty(store):
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
                ctx.progress("instock.articles: Instock catalog read (articles known)", known)
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
    records = []
    for row in rows:
        payload = article_payload(row)
        digest = content_hash(payload)
        same = same_article(remote[row["article_id"]], payload)
        # Identical: accepted as is. Different: "accepted" under another content,
        # so the plan sends an update instead of a create.
        records.append(
            KnownArticle(
                row["article_id"],
                digest if same else "",
                digest if same else "instock:differs",
            )
        )
    position = f"cursor:{next_cursor}" if has_more and next_cursor else "done"
    apply_plan(
        store,
        Plan(
            changes=(LearnArticles(tuple(records), iso()),),
            checkpoints=((BOOTSTRAP_STREAM, position),),
        ),
    )
    return len(records)


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
    while rows := host_articles_with_sync(store, last, size):
        last = rows[-1]["article_id"]
        yield rows


def _requeue_retried_rejects(ctx: JobContext) -> None:
    """`syncd rejects retry` on an article reject: plan that article again this run."""

    def forget(store: Store, reject: dict[str, Any]) -> None:
        ForgetArticle(reject["reference"].removeprefix("article ")).apply(store)

    take_retried_rejects(ctx, REJECT_SOURCE, forget)


SPEC = JobSpec(
    name="instock.articles",
    run=run,
    description="Upload new and changed host catalog articles to Instock",
    default_schedule=Schedule(interval=600),
    connectors=("instock",),
    options_model=Options,
)
