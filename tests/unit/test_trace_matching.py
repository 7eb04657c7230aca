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
