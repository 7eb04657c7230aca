"""Pure decisions of the Instock jobs, as tables of cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.connectors.instock import (
    INT64_MAX,
    InventoryItem,
    Move,
    Order,
    Site,
    check_records,
    inventory_rows,
    site_problem,
)
from syncd.jobs.instock_articles import Action, SyncRow, article_payload, plan_article
from syncd.jobs.instock_inventory import Options as InventoryOptions
from syncd.jobs.instock_inventory import guard_refusal
from syncd.jobs.instock_moves import move_key, next_window
from syncd.jobs.instock_orders import OrderSync, plan_host_order
from syncd.jsontext import content_hash

GOOD = {
    "article_id": "A1",
    "name": "Widget",
    "is_serial_numbered": False,
    "attributes": {},
    "dimensions": {},
}
H = content_hash(GOOD)


@pytest.mark.parametrize(
    ("payload", "sync", "expected"),
    [
        # new article, never sent: upload it
        (GOOD, None, "upload"),
        # Instock accepted exactly this content: nothing to do (zero requests)
        (GOOD, SyncRow(H, H, "accepted"), "skip"),
        # queued earlier and not answered yet: do not queue twice
        (GOOD, SyncRow(H, None, "queued"), "skip"),
        # refused with this content: wait until it changes or an operator retries
        (GOOD, SyncRow(H, None, "refused"), "skip"),
        # accepted before, content changed since: update
        (GOOD, SyncRow("old", "old", "accepted"), "update"),
        # refused before, content changed since: try again as a create
        (GOOD, SyncRow("old", None, "refused"), "upload"),
        # serial-numbered articles cannot be uploaded: a reject, not a retry loop
        ({**GOOD, "is_serial_numbered": True}, None, "refuse"),
        # an id Instock's pattern refuses
        ({**GOOD, "article_id": "A 1"}, None, "refuse"),
    ],
)
def test_plan_article(payload: dict, sync: SyncRow | None, expected: str) -> None:
    """Each catalog case leads to exactly one action."""
    assert plan_article(payload, content_hash(payload), sync).kind == expected


def test_refusal_says_why() -> None:
    """A refused article carries a reason an operator understands."""
    action = plan_article({**GOOD, "is_serial_numbered": True}, "h", None)
    assert action == Action(
        "refuse", "serial-numbered articles cannot be uploaded or updated in Instock"
    )


def test_article_payload_from_host_row() -> None:
    """Host catalog columns map onto Instock's article, dimensions only when given."""
    row = {
        "article_id": "A1",
        "name": "W",
        "is_serial_numbered": 0,
        "attributes": '{"upc": "1"}',
        "dim_x": "1.5",
        "dim_y": "2",
        "dim_z": "3",
        "dim_uom": "in",
    }
    assert article_payload(row) == {
        "article_id": "A1",
        "name": "W",
        "is_serial_numbered": False,
        "attributes": {"upc": "1"},
        "dimensions": {"x": "1.5", "y": "2", "z": "3", "uom": "in"},
    }
    bare = {**row, "dim_x": None, "dim_y": None, "dim_z": None, "dim_uom": None}
    assert article_payload(bare)["dimensions"] == {}  # PUT needs every field
    metric = {**row, "dim_x": "250", "dim_y": "1200", "dim_z": "5", "dim_uom": "mm"}
    assert article_payload(metric)["dimensions"] == {
        "x": "0.25",
        "y": "1.2",
        "z": "0.005",
        "uom": "m",
    }


@pytest.mark.parametrize(
    ("host_status", "sync", "instock", "expected"),
    [
        ("open", None, None, "create"),
        ("open", OrderSync("h", "create", "accepted"), "registered", "skip"),
        ("open", OrderSync("old", "create", "accepted"), "registered", "update"),
        ("open", OrderSync("old", "create", "accepted"), None, "update"),
        ("open", OrderSync("old", "create", "accepted"), "reserved", "refuse"),
        ("cancelled", None, None, "skip"),
        ("cancelled", OrderSync("h", "create", "accepted"), "registered", "cancel"),
        ("cancelled", OrderSync("h", "create", "accepted"), "done", "refuse"),
        ("cancelled", OrderSync("h", "create", "accepted"), "canceled", "done"),
        ("cancelled", OrderSync("h", "cancel", "queued"), "registered", "skip"),
        ("open", OrderSync("old", "cancel", "accepted"), "canceled", "skip"),
    ],
)
def test_plan_host_order(
    host_status: str, sync: OrderSync | None, instock: str | None, expected: str
) -> None:
    """Create once, update/cancel only while registered, otherwise explain."""
    assert plan_host_order(host_status, "h", sync, instock, "ORD-1").kind == expected


def test_order_id_outside_instock_pattern_is_refused() -> None:
    """An order id Instock cannot store is refused before sending."""
    assert plan_host_order("open", "h", None, None, "ORD 1/2").kind == "refuse"


T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_next_window_is_closed_and_overlapping() -> None:
    """Windows end `lag` before now and start `overlap` before the watermark."""
    window = next_window(T0 - timedelta(hours=1), T0, lag=60, overlap=600, max_window=86400)
    assert window is not None
    assert window.start == T0 - timedelta(hours=1, minutes=10)
    assert window.end == T0 - timedelta(minutes=1)


def test_next_window_caps_length_and_stops_when_caught_up() -> None:
    """Backfills advance in steps of max_window; a caught-up watermark pulls nothing."""
    window = next_window(T0 - timedelta(days=3), T0, lag=60, overlap=0, max_window=86400)
    assert window is not None
    assert window.end == T0 - timedelta(days=2)
    assert window.capped  # more closed time waits: the run goes on with the next window
    last = next_window(T0 - timedelta(hours=1), T0, lag=60, overlap=0, max_window=86400)
    assert last is not None
    assert not last.capped  # caught up: one window per run, no re-reading in a loop
    assert next_window(T0 - timedelta(seconds=30), T0, lag=60, overlap=0, max_window=86400) is None


def test_move_key_is_content_identity() -> None:
    """Identical moves share a key; any differing field gives a different key."""
    move = {
        "article_id": "A",
        "qty": 2,
        "move_timestamp": "2026-11-23T10:00:00Z",
        "order_id": None,
        "from_cell_id": "c1",
        "to_cell_id": "c2",
    }
    assert move_key(move) == move_key(dict(move))
    assert move_key(move) != move_key({**move, "qty": 3})


def test_retried_refusals_are_planned_again() -> None:
    """After `rejects retry` (hash forgotten), a refused create is created again, a refused
    update is updated again while registered, a refused cancel is cancelled again."""
    assert plan_host_order("open", "h", OrderSync(None, "create", "refused"), None, "O").kind == (
        "create"
    )
    assert (
        plan_host_order("open", "h", OrderSync(None, "update", "refused"), "registered", "O").kind
        == "update"
    )
    assert (
        plan_host_order(
            "cancelled", "h", OrderSync(None, "update", "refused"), "registered", "O"
        ).kind
        == "cancel"
    )


# --- per-record validation of Instock answers ----------------------------------------------

QTY = {"free": 1, "reserved": 0, "registered": 0}


@pytest.mark.parametrize(
    ("record", "field", "word"),
    [
        ({"article_id": "A", "qty": {**QTY, "free": "abc"}}, "qty.free", "abc"),
        ({"article_id": "A", "qty": {**QTY, "free": float("inf")}}, "qty.free", "inf"),
        ({"article_id": "A", "qty": {**QTY, "free": float("nan")}}, "qty.free", "nan"),
        ({"article_id": "A", "qty": {**QTY, "free": 2**63}}, "qty.free", "9223372036854775808"),
        ({"article_id": "A", "qty": {**QTY, "free": 3.7}}, "qty.free", "3.7"),
        ({"article_id": "A", "qty": {**QTY, "free": 12.0}}, "qty.free", "12.0"),
        ({"article_id": "A", "qty": {**QTY, "free": "12"}}, "qty.free", "'12'"),
        ({"article_id": "A", "qty": {**QTY, "free": True}}, "qty.free", "true"),
        ({"article_id": "A", "qty": {**QTY, "reserved": -5}}, "qty.reserved", "-5"),
        ({"article_id": "A", "qty": {"free": 1, "reserved": 0}}, "qty.registered", "required"),
        ({"qty": QTY}, "article_id", "required"),
        ({"article_id": "", "qty": QTY}, "article_id", "at least 1"),
        ({"article_id": 42, "qty": QTY}, "article_id", "42"),
        (["not", "an", "object"], "record", "must be an object"),
        (None, "record", "must be an object"),
    ],
)
def test_a_bad_inventory_record_names_its_field_and_value(
    record: Any, field: str, word: str
) -> None:
    """Every way a listed inventory record can be wrong becomes one BadRecord naming the
    field and what it held; nothing is converted (no 3.7 -> 3, no "12" -> 12)."""
    good, bad = check_records(
        [record, {"article_id": "B", "qty": QTY}], InventoryItem, "article_id"
    )
    assert [g.article_id for g in good] == ["B"]
    (found,) = bad
    assert (found.index, found.field) == (0, field)
    assert word in found.reason.lower()
    json.dumps(found.raw, allow_nan=False)  # the raw record is kept as valid JSON
    # The inventory pull's own check: the same verdict and the same reject.
    rows, fast_bad = inventory_rows([record, {"article_id": "B", "qty": QTY}])
    assert rows == [("B", 1, 0, 0)]
    assert fast_bad == bad


def test_a_bad_records_secrets_are_redacted() -> None:
    """The raw record kept with a reject passes through the redactor."""
    record = {"article_id": "A", "qty": {**QTY, "free": "x"}, "token": "s3cr3t-value"}
    (_, [found]) = check_records([record], InventoryItem, "article_id")
    assert "s3cr3t-value" not in json.dumps(found.raw)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["A1", "free", "qty", "2024-01-01T00:00:00Z"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["article_id", "qty", "free", "reserved", "registered", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(JSONISH, max_size=6))
def test_every_record_is_stored_or_rejected(items: list[Any]) -> None:
    """The accounting rule for a page, whatever it holds: records listed = good + bad, in
    order of position, and validation never raises."""
    for model, key in ((InventoryItem, "article_id"), (Move, "article_id"), (Order, "order_id")):
        good, bad = check_records(items, model, key)
        assert len(good) + len(bad) == len(items)
        assert [b.index for b in bad] == sorted({b.index for b in bad})
        for b in bad:
            json.dumps(b.raw, allow_nan=False)


def _as_checked(items: list[Any]) -> tuple[list[Any], list[Any]]:
    good, bad = check_records(items, InventoryItem, "article_id")
    rows = [(g.article_id, g.qty.free, g.qty.reserved, g.qty.registered) for g in good]
    return rows, bad


EDGE_COUNT = st.sampled_from([INT64_MAX + 1, -1, True, False, 1.0, "1", None])
COUNT = st.integers(0, INT64_MAX) | EDGE_COUNT
ARTICLE_ID = st.text(min_size=1, max_size=3) | st.sampled_from(
    ["", "x" * 1024, "x" * 1025, 42, None, True]
)
NEAR_VALID = st.fixed_dictionaries(
    {
        "article_id": ARTICLE_ID,
        "qty": st.fixed_dictionaries({"free": COUNT, "reserved": COUNT, "registered": COUNT})
        | st.fixed_dictionaries({}, optional={"free": COUNT, "reserved": COUNT})
        | JSONISH,
    },
    optional={"name": JSONISH},
)


EDGES = [0, INT64_MAX, INT64_MAX + 1, -1, True, False, 1.0, "1", None]


@pytest.mark.parametrize(
    "record",
    [{"article_id": "A", "qty": {**QTY, name: value}} for name in QTY for value in EDGES]
    + [{"article_id": "A", "qty": {k: v for k, v in QTY.items() if k != name}} for name in QTY]
    + [{"article_id": a, "qty": QTY} for a in ("", "x" * 1024, "x" * 1025, 42, None, True)]
    + [{"qty": QTY}, {"article_id": "A"}, {"article_id": "A", "qty": [1, 0, 0]}, [], "A"],
)
def test_the_inventory_check_at_each_edge(record: Any) -> None:
    """Each edge of each field: inventory_rows and InventoryItem agree."""
    assert inventory_rows([record]) == _as_checked([record])


@pytest.mark.parametrize(
    "record",
    [{"article_id": "A", "qty": {**QTY, name: value}} for name in QTY for value in EDGES]
    + [{"article_id": a, "qty": QTY} for a in ("", "x" * 1025, 42, None, True)]
    + [{"qty": QTY}, {"article_id": "A", "qty": [1, 0, 0]}, [], "A", None],
)
def test_one_edge_record_in_a_full_page_of_plain_ones(record: Any) -> None:
    """A page of plain records is checked column by column: one record at an edge among
    a thousand plain ones, wherever it stands, still gets the model's verdict, and the
    plain ones are stored in list order."""
    plain = [{"article_id": f"P{n}", "qty": {**QTY, "free": n}} for n in range(999)]
    for at in (0, 500, 999):
        items = [*plain[:at], record, *plain[at:]]
        assert inventory_rows(items) == _as_checked(items)


@settings(max_examples=400, deadline=None)
@given(items=st.lists(NEAR_VALID | JSONISH, max_size=6))
def test_the_inventory_check_gives_the_models_verdicts(items: list[Any]) -> None:
    """inventory_rows (the pull's fast check) stores and rejects exactly what InventoryItem
    does, with the same rejects: its shortcut never takes a record the model refuses."""
    assert inventory_rows(items) == _as_checked(items)


@pytest.mark.parametrize(
    ("existing", "absent", "options", "refused"),
    [
        (0, 0, {}, False),  # first scan: nothing to lose
        (100, 0, {}, False),
        (100, 50, {}, False),  # exactly the fraction: allowed
        (100, 51, {}, True),
        (100, 100, {}, True),  # an empty answer
        (100, 100, {"allow_mass_delete": True}, False),
        (100, 10, {"max_delete_fraction": 0.05}, True),
        (100, 100, {"max_delete_fraction": 1.0}, False),
    ],
)
def test_inventory_guard(
    existing: int, absent: int, options: dict[str, Any], refused: bool
) -> None:
    """A scan may zero at most max_delete_fraction of the articles held with stock."""
    reason = guard_refusal(existing, absent, InventoryOptions(**options))
    assert (reason is not None) == refused
    if reason:
        assert f"{absent} of {existing}" in reason


@pytest.mark.parametrize(
    ("environment", "virtual", "problem"),
    [
        ("production", False, None),
        ("sandbox", True, None),
        ("production", True, 'is virtual: set it to "sandbox" if this is the site meant'),
        ("sandbox", False, 'is physical: set it to "production" if this is the site meant'),
        ("production", None, "not among the sites"),
    ],
)
def test_site_environment(environment: str, virtual: bool | None, problem: str | None) -> None:
    """The site's is_virtual must agree with the configured environment."""
    sites = [Site(site_id="S2", is_virtual=False)]
    found = None if virtual is None else Site(site_id="S1", is_virtual=virtual)
    got = site_problem("S1", environment, found, [*sites, *([found] if found else [])])
    assert (got is None) == (problem is None)
    if problem:
        assert problem in (got or "")


def test_a_scan_tally_survives_the_checkpoint_and_hashes_content_not_identity() -> None:
    """The tally rides in the checkpoint JSON unchanged; the same stored rows give the same
    digest whatever objects hold them, other rows or another page order another one; past
    the ledger's request id limit the rest are counted."""
    from syncd.jobs.instock_inventory import (
        Position,
        Tally,
        dump_position,
        load_position,
        tally_page,
    )
    from syncd.state.windows import MAX_REQUEST_IDS

    page_a = [("100000000001", 3, 0, 1), ("100000000002", 0, 2, 0)]
    page_b = [("100000000003", 5, 0, 0)]
    copy_a = [("".join(["1000000", "00001"]), 3, 0, 1), (str(100000000002), 0, 2, 0)]
    t = tally_page(Tally(), page_a, 3, 1, "rid-1", "2026-12-05T06:00:00.000Z")
    t = tally_page(t, page_b, 1, 0, None, "2026-12-05T06:00:01.000Z")
    same = tally_page(tally_page(Tally(), copy_a, 3, 1, "x", "t"), page_b, 1, 0, None, "t")
    swapped = tally_page(tally_page(Tally(), page_b, 1, 0, None, "t"), page_a, 3, 1, None, "t")
    assert t.digest == same.digest != swapped.digest
    assert (t.started_at, t.pages, t.listed, t.stored, t.rejected) == (
        "2026-12-05T06:00:00.000Z", 2, 4, 3, 1,
    )  # fmt: skip
    assert t.request_ids == ("rid-1",)
    position = Position(4, "cursor-9", 0, t)
    assert load_position(dump_position(position)) == position
    assert load_position('{"scan": 4, "cursor": "c"}') == Position(4, "c")  # an older one
    many = Tally()
    for n in range(MAX_REQUEST_IDS + 3):
        many = tally_page(many, [], 0, 0, f"r{n}", "t")
    assert (len(many.request_ids), many.request_ids_more) == (MAX_REQUEST_IDS, 3)
