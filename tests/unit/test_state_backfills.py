"""The backfill requests' owner (syncd/state/backfills.py) on a real SQLite file: one
pending per stream, a backfill left running is claimed before a new request, a step's
counts and differences, cancelling and finishing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.errors import BusyError, NotFoundError, RefusedError
from syncd.state import Store
from syncd.state.backfills import (
    MAX_DIFFERENCES,
    Difference,
    RecordStep,
    cancel_backfill,
    claim_next,
    differences,
    finish_backfill,
    get_backfill,
    pending_backfills,
    request_backfill,
)

FROM, TO = "2026-12-01T00:00:00.000Z", "2026-12-02T00:00:00.000Z"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "syncd.db") as opened:
        yield opened


def test_one_pending_backfill_per_stream(store: Store) -> None:
    first = request_backfill(store, "instock.moves", FROM, TO, dry_run=False)
    assert first.status == "requested"
    with pytest.raises(BusyError, match=f"backfill {first.id} .* is requested"):
        request_backfill(store, "instock.moves", FROM, TO, dry_run=True)
    other = request_backfill(store, "instock.orders", FROM, TO, dry_run=True)
    assert pending_backfills(store) == 2
    claimed = claim_next(store, "run-1")
    assert claimed is not None
    assert claimed.id == first.id
    with pytest.raises(BusyError, match="is running"):
        request_backfill(store, "instock.moves", FROM, TO, dry_run=False)
    finish_backfill(store, first.id, "done")
    assert request_backfill(store, "instock.moves", FROM, TO, dry_run=False).id > other.id


def test_a_backfill_left_running_is_claimed_first_and_keeps_its_cursor(store: Store) -> None:
    """A crash leaves a backfill `running`: the next run takes it before older requests,
    from the cursor its last step committed, counting on from there."""
    older = request_backfill(store, "instock.orders", FROM, TO, dry_run=False)
    left = request_backfill(store, "instock.moves", FROM, TO, dry_run=False)
    with store.transaction():
        store.db.execute("UPDATE backfills SET status = 'running' WHERE id = ?", [left.id])
        RecordStep(left.id, "2026-12-01T01:00:00.000Z", found=3, missing=2, applied=2).apply(store)
    claimed = claim_next(store, "run-2")
    assert claimed is not None
    assert (claimed.id, claimed.cursor, claimed.steps, claimed.found) == (
        left.id,
        "2026-12-01T01:00:00.000Z",
        1,
        3,
    )
    assert claimed.run_id == "run-2"
    finish_backfill(store, left.id, "done")
    then = claim_next(store, "run-2")
    assert then is not None
    assert then.id == older.id


def test_differences_are_kept_up_to_the_bound_and_the_counts_exactly(store: Store) -> None:
    asked = request_backfill(store, "instock.moves", FROM, TO, dry_run=True)
    many = [Difference("missing", f"k{n}", {"n": n}) for n in range(MAX_DIFFERENCES + 5)]
    with store.transaction():
        RecordStep(asked.id, "c1", found=len(many), missing=len(many), differences=many).apply(
            store
        )
        RecordStep(asked.id, "c2", missing=1, differences=[Difference("changed", "x", {})]).apply(
            store
        )
    kept = differences(store, asked.id)
    assert len(kept) == MAX_DIFFERENCES
    assert kept[0] == {"kind": "missing", "key": "k0", "detail": {"n": 0}, "applied": False}
    done = get_backfill(store, asked.id)
    assert (done.missing, done.steps, done.cursor) == (MAX_DIFFERENCES + 6, 2, "c2")


def test_cancel_a_pending_backfill_and_refuse_an_ended_one(store: Store) -> None:
    asked = request_backfill(store, "dsorder.pull", FROM, TO, dry_run=False)
    assert cancel_backfill(store, asked.id).status == "cancelled"
    assert claim_next(store, "run-3") is None
    finish_backfill(store, asked.id, "done")  # a cancelled one stays cancelled
    assert get_backfill(store, asked.id).status == "cancelled"
    with pytest.raises(RefusedError, match="is cancelled"):
        cancel_backfill(store, asked.id)
    with pytest.raises(NotFoundError):
        cancel_backfill(store, 999)
