"""The trace timeline assembler: time order, causal tie-break, one event per row."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.state.lineage import STAGES, TraceEvent, assemble


def ev(at: str, event: str, source: str = "x") -> TraceEvent:
    return TraceEvent(at, event, "", source)


def test_equal_times_follow_the_loop_order() -> None:
    t = "2026-12-04T10:00:00Z"
    got = assemble(
        [
            ev(t, "close", "c"),
            ev(t, "move", "m"),
            ev(t, "dsorder.pulled", "p"),
            ev(t, "fulfil", "f"),
        ]
    )
    assert [e.event for e in got] == ["dsorder.pulled", "move", "fulfil", "close"]


def test_second_and_millisecond_stamps_compare_as_instants() -> None:
    got = assemble([ev("2026-12-04T10:00:01Z", "a", "1"), ev("2026-12-04T10:00:00.500Z", "b", "2")])
    assert [e.source for e in got] == ["2", "1"]


def test_a_row_found_twice_is_shown_once_and_timeless_rows_are_left_out() -> None:
    t = "2026-12-04T10:00:00Z"
    got = assemble(
        [ev(t, "move", "instock_moves:1"), ev(t, "move", "instock_moves:1"), ev("", "x")]
    )
    assert len(got) == 1


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from(sorted(STAGES)), st.integers(0, 5)),
        max_size=20,
    )
)
def test_output_is_sorted_and_keeps_every_distinct_row(items: list[tuple[int, str, int]]) -> None:
    evs = [ev(f"2026-12-04T10:00:{s:02d}Z", e, f"r{n}") for s, e, n in items]
    got = assemble(evs)
    assert len(got) == len({(e.source, e.event) for e in evs})
    keys = [(e.at, STAGES[e.event], e.source) for e in got]
    assert keys == sorted(keys)


def test_trace_reads_the_ledger_streams_the_jobs_write() -> None:
    """The state layer cannot import the jobs: their stream names are repeated, and must
    stay equal, or a pulled record's ledger row is never found."""
    from syncd.jobs import dsorder_pull, instock_inventory, instock_moves, instock_orders
    from syncd.state import lineage

    assert lineage.DSORDER_STREAM == dsorder_pull.LEDGER_STREAM
    assert lineage.INSTOCK_ORDERS_STREAM == instock_orders.LEDGER_STREAM
    assert lineage.MOVES_STREAM == instock_moves.LEDGER_STREAM
    assert lineage.INVENTORY_STREAM == instock_inventory.LEDGER_STREAM


def test_equal_times_and_stages_order_row_ids_as_numbers() -> None:
    """Intents 7..10 queued in one instant come out 7, 8, 9, 10 (not 10 first, as text)."""
    t = "2026-12-04T10:00:00Z"
    got = assemble([ev(t, "intent.queued", f"outbox:{n}") for n in (10, 8, 7, 9)])
    assert [e.source for e in got] == ["outbox:7", "outbox:8", "outbox:9", "outbox:10"]
