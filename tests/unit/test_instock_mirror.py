"""The Instock mirror tables have one owner, syncd/state/mirror/instock.py, and its changes
write what the jobs and the `instock` destination wrote before."""

from __future__ import annotations

import re

from syncd.state import Store
from syncd.state.mirror.instock import (
    ArticleAccepted,
    ArticleMark,
    ArticleRefused,
    ForgetArticle,
    ForgetRefusedHostOrder,
    HostOrderMark,
    KnownArticle,
    LearnArticles,
    MarkArticles,
    MarkHostOrders,
    OrderOutcome,
    QueueDSOrderCreate,
    queued_articles,
)
from tests.unit.test_state_owners import PACKAGE, sql_strings

OWNER = "state/mirror/instock.py"
TABLES = (
    "instock_orders",
    "instock_order_sync",
    "instock_article_sync",
    "instock_ordertasks",
    "instock_order_events",
)
WRITE = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(" + "|".join(TABLES) + r")\b", re.IGNORECASE
)
# Modules still writing an Instock mirror table themselves, to be routed through the owner
# (dsorder.pull: `QueueDSOrderCreate` is its statement).
NOT_YET_ROUTED = {"jobs/dsorder_pull.py"}


def mirror_writers() -> set[str]:
    return {
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        for _line, text in sql_strings(path)
        if WRITE.search(text)
    }


def test_only_the_owner_writes_the_instock_mirror_tables() -> None:
    """instock.orders, instock.articles, the following of orders and the `instock`
    destination change the mirror through the owner."""
    assert OWNER in mirror_writers()
    assert mirror_writers() - {OWNER} <= NOT_YET_ROUTED


def _sync(db: Store, table: str) -> list[dict[str, object]]:
    return [
        {k: v for k, v in r.items() if k != "updated_at"}
        for r in db.query(f"SELECT * FROM {table}")
    ]


def test_a_dsorder_create_is_queued_once(db: Store) -> None:
    """A replayed pull leaves the row of an order whose create was already answered."""
    QueueDSOrderCreate("IO-1", "t1").apply(db)
    OrderOutcome("IO-1", "create", "accepted", None, "t2").apply(db)
    QueueDSOrderCreate("IO-1", "t3").apply(db)
    assert db.query(
        "SELECT order_id, source, action, status, updated_at FROM instock_order_sync"
    ) == [
        {
            "order_id": "IO-1",
            "source": "dsorder",
            "action": "create",
            "status": "accepted",
            "updated_at": "t2",
        }
    ]


def test_an_outcome_lands_only_on_the_action_it_answers(db: Store) -> None:
    """The answer to an update that a cancel replaced since changes nothing."""
    MarkHostOrders((HostOrderMark("O1", "h1", "cancel", "queued"),), "t1").apply(db)
    OrderOutcome("O1", "update", "refused", "late", "t2").apply(db)
    assert _sync(db, "instock_order_sync")[0]["status"] == "queued"
    OrderOutcome("O1", "cancel", "refused", "not registered", "t3").apply(db)
    ForgetRefusedHostOrder("O1").apply(db)
    row = _sync(db, "instock_order_sync")[0]
    assert (row["pushed_hash"], row["action"], row["status"], row["reason"]) == (
        None,
        "update",
        "refused",
        "not registered",
    )


def test_article_rows_follow_queue_accept_refuse_and_retry(db: Store) -> None:
    """Accepted content counts as accepted only if it is still what is queued; a bootstrap
    never overwrites a row; a retry forgets the queued content."""
    MarkArticles((ArticleMark("A1", "h2", "queued"), ArticleMark("A2", "h", "queued")), "t").apply(
        db
    )
    ArticleAccepted("A1", "h1", "t").apply(db)  # an older content answered late
    ArticleAccepted("A2", "h", "t").apply(db)
    LearnArticles((KnownArticle("A2", "x", "x"), KnownArticle("A3", "h3", "h3")), "t").apply(db)
    assert queued_articles(db, ["A1", "A2", "A3"]) == ["A1"]
    ArticleRefused("A1", "bad name", "t").apply(db)
    ForgetArticle("A1").apply(db)
    rows = {r["article_id"]: r for r in _sync(db, "instock_article_sync")}
    assert {k: (r["host_hash"], r["accepted_hash"], r["status"]) for k, r in rows.items()} == {
        "A1": ("", "h1", "queued"),
        "A2": ("h", "h", "accepted"),
        "A3": ("h3", "h3", "accepted"),
    }
    assert rows["A1"]["reason"] == "bad name"
