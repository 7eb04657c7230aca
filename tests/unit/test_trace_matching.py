"""`syncd trace` matches ids literally: an id holding % or _ (LIKE's wildcards), or one
that differs only in case, never pulls in the rows of another id. Real SQLite file."""

from __future__ import annotations

from pathlib import Path

from syncd.state import Store
from syncd.state.lineage import trace
from syncd.state.store import NewIntent, NewReject


def sources(events: list) -> set[str]:  # type: ignore[type-arg]
    return {e.source for e in events}


def test_wildcards_and_case_in_an_id_match_only_that_id(tmp_path: Path) -> None:
    with Store.open(tmp_path / "syncd.db") as store, store.transaction():
        ids = ("A_1", "A%1", "AX1", "a_1", "A_10")
        for n, oid in enumerate(ids):
            store.add_rejects(
                [
                    NewReject("dsorder:lines", f"order {oid} line 10", "bad line"),
                    NewReject("outbox:instock", f"orders.create order:{oid}", "refused"),
                    NewReject("host:orders", f"orders-{oid}.csv:{n + 2}", "bad row"),
                ]
            )
            store.add_intents(
                [
                    NewIntent(
                        "host", "file:order_status", "order_status", f"status:{n}",
                        {"stream": "order_status", "rows": [{"order_id": oid}]},
                    )
                ]
            )  # fmt: skip
        reject_of = {
            r["reference"]: f"rejects:{r['id']}" for r in store.query("SELECT * FROM rejects")
        }
        intent_of = {
            ids[n]: f"outbox:{r['id']}"
            for n, r in enumerate(store.query("SELECT id FROM outbox ORDER BY id"))
        }

    with Store.open(tmp_path / "syncd.db") as store:
        for oid in ("A_1", "A%1"):
            ds = sources(trace(store, oid, "dsorder-order"))
            assert ds == {reject_of[f"order {oid} line 10"]}, oid
            inst = sources(trace(store, oid, "instock-order"))
            assert inst == {reject_of[f"orders.create order:{oid}"], intent_of[oid]}, oid
            fil = sources(trace(store, f"orders-{oid}.csv", "file"))
            n = ids.index(oid)
            assert fil == {reject_of[f"orders-{oid}.csv:{n + 2}"]}, oid


def test_a_move_past_the_request_ids_a_window_keeps_finds_its_run_s_capped_window(
    tmp_path: Path,
) -> None:
    """A window of 25 pages keeps 20 request ids: a move of page 23 is traced to the one
    window of its run that left ids out; with two such windows in the run it is not
    guessed."""
    from syncd.state.windows import RecordWindow

    ids = tuple(f"{n:032x}" for n in range(25))
    with Store.open(tmp_path / "syncd.db") as store:
        with store.transaction():
            RecordWindow(
                "instock.moves", "instock.moves", "run-1", "window",
                "2026-12-05T07:00:00.000Z", "2026-12-05T07:00:05.000Z",
                "2026-12-04T07:00:00.000Z", "2026-12-05T06:59:00.000Z",
                pages=25, request_ids=ids,
            ).apply(store)  # fmt: skip
            store.db.execute(
                "INSERT INTO instock_moves (move_key, occurrence, article_id, qty, "
                "move_timestamp, pulled_at, run_id, request_id) "
                "VALUES ('k', 1, 'A1', 1, '2026-12-05T06:00:00Z', '2026-12-05T07:00:05.000Z', "
                "'run-1', ?)",
                [ids[22]],
            )
        [move] = trace(store, "k", "move")
        assert move.data["ledger_row"] == 1
        assert move.origin.startswith(f"request id {ids[22]}, ledger row 1 (instock.moves")
        with store.transaction():
            RecordWindow(
                "instock.moves", "instock.moves", "run-1", "window",
                "2026-12-05T07:01:00.000Z", "2026-12-05T07:01:05.000Z",
                "2026-12-05T06:50:00.000Z", "2026-12-05T07:00:00.000Z",
                pages=21, request_ids=tuple(f"{n:031x}f" for n in range(21)),
            ).apply(store)  # fmt: skip
        [move] = trace(store, "k", "move")
        assert move.data["ledger_row"] is None
        assert "no live ledger row" in move.origin


def test_an_article_s_host_rejects_are_its_own_not_ids_containing_it(tmp_path: Path) -> None:
    """A host reject is the article's when its row's article_id column (a readable row)
    or a whole cell of its raw line (an unreadable one) is the id: "12" does not pull in
    the rows of "A123" or "120"."""
    with Store.open(tmp_path / "syncd.db") as store, store.transaction():
        store.add_rejects(
            [
                NewReject("host:articles", "articles.csv:2", "bad", payload='{"article_id": "12"}'),
                NewReject("host:articles", "articles.csv:3", "bad", payload='{"article_id": "A123"}'),
                NewReject("host:stock", "stock.csv:4", "bad", payload='{"article_id": "120"}'),
                NewReject("host:orders", "orders.csv:5", "bad", payload='O1,"12",3,"x'),
                NewReject("host:orders", "orders.csv:6", "bad", payload='O2,A123,3,"x'),
                NewReject("host:orders", "orders.csv:7", "bad", payload=None),
            ]
        )  # fmt: skip
    with Store.open(tmp_path / "syncd.db") as store:
        refs = {e.data["reference"] for e in trace(store, "12", "article") if e.event == "reject"}
    assert refs == {"articles.csv:2", "orders.csv:5"}
