"""Benchmark: what choosing the orders to poll costs dsorder.progress per run, by open orders.

Each `follow = "moves"` run asks the state DB which open orders moved since their last poll
(`moved_orders_due`), how many orders the sweep takes turns over (`create_counts`, with
the refused creates in the same scan), and which are due for the sweep (`orders_to_sweep`).
A site with 20,000 open orders runs this every 10 s, so it should cost what changed, not
what is open.

The bench builds a state DB (syncd's migrations) with N open (`created`) DSOrder orders and
as many closed ones, of which about 3% moved since their last poll and most were polled in
the last sweep interval, and a copy of it without the two partial indexes of m0027 (the
schema before them, read by the same queries without their `INDEXED BY`; no ANALYZE in
either, as syncd runs none); then it times the queries of one run on each, alternating rounds,
and prints the median of `--rounds` with the spread. The sweep's count of open orders is
one scan of them either way (it counts, so it reads them all: about 15 ms at 20,000).

    python bench/follow_queries.py [--sizes 2000,20000,100000] [--rounds 5] [--runs 20]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from syncd.clock import iso
from syncd.state import Store
from syncd.state.mirror import dsorder as orders

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rounds import Figures, interleave, machine_load, ratios, spread_of, warm_up

FOLLOW_INDEXES = ("dsorder_orders_moved_due", "dsorder_orders_sweep_due")
INDEXED_BY = re.compile(r"INDEXED BY \w+ ")


def build(path: Path, n: int) -> None:
    """N created orders and N closed ones, with their Instock create accepted."""
    rng = random.Random(n)
    now = time.time()
    store = Store.open(path)
    with store.transaction():
        for i in range(2 * n):
            order_id = str(100_000 + i)
            state = "created" if i >= n else "closed"
            updated = iso_at(now - rng.uniform(0, 3600))
            polled = iso_at(now - rng.uniform(0, 1200)) if rng.random() < 0.9 else None
            moved = iso_at(now - rng.uniform(0, 600)) if rng.random() < 0.5 else None
            polled_moved = moved if moved and rng.random() > 0.06 else None
            store.db.execute(
                "INSERT INTO dsorder_orders (order_id, supplier_id, store_id, order_date, "
                "delivery_date, raw, instock_order_id, state, pulled_at, updated_at, "
                "polled_at, moved_at, polled_moved_at) "
                "VALUES (?, 'SU', 'ST', '2026-12-05', '2026-12-06', '{}', ?, ?, ?, ?, ?, ?, ?)",
                [order_id, f"DS-{order_id}", state, updated, updated, polled, moved, polled_moved],
            )
            store.db.execute(
                "INSERT INTO instock_order_sync (order_id, source, action, status, updated_at) "
                "VALUES (?, 'dsorder', 'create', 'accepted', ?)",
                [f"DS-{order_id}", updated],
            )
    # no ANALYZE: syncd never runs it
    store.close()


def iso_at(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


def one_run(store: Store) -> tuple[int, int]:
    """The selection queries of one dsorder.progress run (follow = "moves")."""
    moved = orders.moved_orders_due(store, 5000)
    open_orders, _refused = orders.create_counts(store)
    before = iso_at(time.time() - 600)
    swept = orders.orders_to_sweep(store, before, min(10, open_orders))
    return len(moved), len(swept)


def contender(path: Path, runs: int, *, named: bool = True) -> Callable[[str], Figures]:
    """One run's queries `runs` times; `named=False`: with their `INDEXED BY` clauses
    taken out, as they read before m0027."""

    def run(_label: str) -> Figures:
        with Store.open(path, migrate=False) as store:
            if not named:
                query = store.query
                store.query = lambda sql, *a, **k: query(INDEXED_BY.sub("", sql), *a, **k)  # type: ignore[method-assign]
            started = time.thread_time()
            for _ in range(runs):
                one_run(store)
            return {"ms": (time.thread_time() - started) / runs * 1000}

    return run


def without_follow_indexes(path: Path, into: Path) -> None:
    """A copy of the state DB at `path` as the schema was before m0027."""
    shutil.copyfile(path, into)
    with Store.open(into, migrate=False) as store, store.transaction():
        for name in FOLLOW_INDEXES:
            store.db.execute(f"DROP INDEX {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20, help="runs timed per round")
    args = parser.parse_args()
    print(f"follow queries: {machine_load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"state-{n}.db"
            build(path, n)
            before = Path(tmp) / f"state-{n}-without.db"
            without_follow_indexes(path, before)
            contenders = {
                "without": contender(before, args.runs, named=False),
                "syncd": contender(path, args.runs),
            }
            warm_up(contenders)
            series = interleave(contenders, args.rounds, show=lambda _r, _n, f: f"{f['ms']:.2f} ms")
            with Store.open(path, migrate=False) as store:
                moved, swept = one_run(store)
            print(
                f"== {n:,} open orders ({moved} moved, {swept} swept a run): CPU per run "
                f"syncd {series['syncd'].spread('ms', '.2f')} ms, without the follow indexes "
                f"{series['without'].spread('ms', '.2f')} ms, "
                f"x{spread_of(ratios(series['syncd'], 'ms', series['without'], 'ms'))}; "
                f"{machine_load()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
