"""What a destination accepted and what it refused, per item key: one ledger for the jobs
that drive a remote themselves (planning.import, oregon.siop).

Each job keeps two tables of its own (their shapes are its schema, kept as migrated):
`accepted` holds the hash of the version the remote took (a row whose hash is unchanged
is not sent again), `failed` the hash of the version it refused and the reject that says
why (that version waits until it changes or an operator retries the reject). Every write
goes through here so that the two stay consistent with the rejects: an item accepted or
refused anew resolves the reject of its earlier failure, and a retried reject forgets
its failure so the item is planned again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from syncd.clock import iso
from syncd.state.store import NewReject, Store

LOOKUP_BATCH = 900  # bound variables per query, far under SQLite's limit


@dataclass(frozen=True)
class Ledger:
    """The accepted/failed pair of one job, named by its tables and columns."""

    accepted: str  # table of accepted versions
    failed: str  # table of refused versions (with reject_id and failed_at)
    key: tuple[str, ...]  # the item key columns, in the order keys are passed
    hash: str  # the column holding a version's content hash

    def _where(self, columns: Iterable[str]) -> str:
        return " AND ".join(f"{c} = ?" for c in columns)

    def _key_values(self, key: Sequence[Any]) -> list[Any]:
        if len(key) != len(self.key):
            raise ValueError(f"{self.failed}: a key has {len(self.key)} parts, got {len(key)}")
        return list(key)

    # -- reads ----------------------------------------------------------------

    def has_any(
        self, store: Store, which: Literal["accepted", "failed"], scope: Mapping[str, Any]
    ) -> bool:
        table = getattr(self, which)
        return bool(
            store.scalar(
                f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {self._where(scope)})",
                list(scope.values()),
            )
        )

    def rows(
        self,
        store: Store,
        which: Literal["accepted", "failed"],
        scope: Mapping[str, Any],
        column: str,
        values: Sequence[Any],
        columns: Sequence[str],
        *,
        where: str = "",
        params: Sequence[Any] = (),
    ) -> list[dict[str, Any]]:
        """`columns` of the rows within `scope` whose `column` is one of `values` (and
        that meet `where`), queried in slices so that any number of values fits."""
        table = getattr(self, which)
        if not self.has_any(store, which, scope):
            return []  # e.g. a first run: nothing to look up
        found: list[dict[str, Any]] = []
        for start in range(0, len(values), LOOKUP_BATCH):
            part = list(values[start : start + LOOKUP_BATCH])
            sql = (
                f"SELECT {', '.join(columns)} FROM {table} WHERE {self._where(scope)} "
                f"AND {column} IN ({','.join('?' * len(part))})"
            )
            found += store.query(
                sql + (f" AND {where}" if where else ""), [*scope.values(), *part, *params]
            )
        return found

    # -- writes ---------------------------------------------------------------

    def accept(self, store: Store, key: Sequence[Any], digest: str, **columns: Any) -> None:
        """The remote took this version of the item: its failure (if any) is over, and
        the version is recorded with `columns` (the item, the job, the time...)."""
        self.clear_failure(store, key)
        names = [*self.key, self.hash, *columns]
        updates = ", ".join(f"{c} = excluded.{c}" for c in [self.hash, *columns])
        store.db.execute(
            f"INSERT INTO {self.accepted} ({', '.join(names)}) VALUES "
            f"({', '.join('?' * len(names))}) ON CONFLICT ({', '.join(self.key)}) "
            f"DO UPDATE SET {updates}",
            [*self._key_values(key), digest, *columns.values()],
        )

    def accept_selected(
        self,
        store: Store,
        scope: Mapping[str, Any],
        selected: str,
        params: Sequence[Any],
        columns: Sequence[str],
        **constants: Any,
    ) -> int:
        """Record as accepted every row a SELECT yields (its `columns`: the rest of the
        key, the hash and any other), within `scope` and with `constants`; the failures
        of those keys are over. One statement each, for jobs of many rows. Returns the
        number of rows recorded."""
        rest = [c for c in self.key if c not in scope]
        in_selected = f"({', '.join(rest)}) IN (SELECT {', '.join(rest)} FROM ({selected}))"
        if self.has_any(store, "failed", scope):  # a failure of an earlier version is over
            where = f"{self._where(scope)} AND {in_selected}"
            store.resolve_open_rejects(
                row["reject_id"]
                for row in store.query(
                    f"SELECT reject_id FROM {self.failed} WHERE {where} AND reject_id IS NOT NULL",
                    [*scope.values(), *params],
                )
            )
            store.db.execute(f"DELETE FROM {self.failed} WHERE {where}", [*scope.values(), *params])
        names = [*scope, *columns, *constants]
        updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in self.key)
        picked = ", ".join(["?"] * len(scope) + list(columns) + ["?"] * len(constants))
        return int(
            store.db.execute(
                f"INSERT INTO {self.accepted} ({', '.join(names)}) SELECT {picked} FROM "
                f"({selected}) WHERE true ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET "
                f"{updates}",
                [*scope.values(), *constants.values(), *params],
            ).rowcount
        )

    def fail(
        self,
        store: Store,
        key: Sequence[Any],
        digest: str,
        reject: NewReject,
        *,
        run_id: str | None,
        **columns: Any,
    ) -> int:
        """The remote (or the local check) refused this version: its reject is opened and
        the version recorded with it, superseding an earlier failure (whose open reject
        is resolved). Returns the reject's id."""
        self.clear_failure(store, key)
        reject_id = store.add_reject(reject, run_id=run_id)
        names = [*self.key, self.hash, *columns, "reject_id", "failed_at"]
        store.db.execute(
            f"INSERT INTO {self.failed} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [*self._key_values(key), digest, *columns.values(), reject_id, iso()],
        )
        return reject_id

    def clear_failure(self, store: Store, key: Sequence[Any]) -> None:
        """Forget an item's failure; its reject, if still open, is resolved."""
        where, values = self._where(self.key), self._key_values(key)
        rows = store.query(f"SELECT reject_id FROM {self.failed} WHERE {where}", values)
        store.resolve_open_rejects(r["reject_id"] for r in rows if r["reject_id"] is not None)
        store.db.execute(f"DELETE FROM {self.failed} WHERE {where}", values)

    def forget_retried(self, store: Store, reject: Mapping[str, Any]) -> None:
        """`syncd rejects retry` on the reject of a failure: the item is planned again."""
        store.db.execute(f"DELETE FROM {self.failed} WHERE reject_id = ?", [reject["id"]])
