"""The `rate_budget` table's owner: each connector's shared token bucket and its park.

`syncd.ratebudget` decides; this module only loads and saves its `Bucket` values, on a
connection of its own (the budget is written from whichever thread sent a request), in
short transactions that queue behind the process's other writers.
"""

from __future__ import annotations

import threading
from pathlib import Path

from syncd.ratebudget import Bucket
from syncd.state.store import Store


class BudgetTable:
    """`syncd.ratebudget.BudgetStore` over the state DB at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._store: Store | None = None

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.path, migrate=False)
        return self._store

    def load(self, connector: str) -> Bucket | None:
        with self._lock:
            rows = self._open().query(
                "SELECT tokens, at, parked_until, park_reason FROM rate_budget WHERE connector = ?",
                (connector,),
            )
        if not rows:
            return None
        row = rows[0]
        return Bucket(
            tokens=float(row["tokens"]),
            at=float(row["at"]),
            parked_until=float(row["parked_until"]),
            park_reason=str(row["park_reason"]),
        )

    def save(self, connector: str, bucket: Bucket) -> None:
        with self._lock:
            store = self._open()
            with store.transaction():
                store.db.execute(
                    "INSERT INTO rate_budget (connector, tokens, at, parked_until, park_reason) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connector) DO UPDATE SET "
                    "tokens = excluded.tokens, at = excluded.at, "
                    "parked_until = excluded.parked_until, park_reason = excluded.park_reason",
                    (connector, bucket.tokens, bucket.at, bucket.parked_until, bucket.park_reason),
                )

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
