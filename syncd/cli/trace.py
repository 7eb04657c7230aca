"""`syncd trace`: everything the state DB holds about one key, in time order."""

from __future__ import annotations

from pathlib import Path

import click

from syncd.cli.common import (
    config_option,
    echo,
    echo_json,
    handle_errors,
    json_option,
    open_store,
    stdout_is_tty,
    table,
    when,
)
from syncd.errors import NotFoundError


@click.command()
@click.argument("key")
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["dsorder-order", "instock-order", "article", "file", "move"]),
    help="Read KEY as this kind of thing (default: detected from the state DB).",
)
@config_option
@json_option
@handle_errors
def trace(key: str, key_type: str | None, config_path: Path | None, as_json: bool) -> None:
    """Show everything the state DB holds about KEY, in time order.

    KEY is a DSOrder order id, an Instock order id, an article id, a host file name or
    a move (id or move_key). On a terminal: a timeline (local time, event, details; a
    pulled record's request id and ledger row on a "from" line under it); piped or with
    --json: a JSON list (`origin`). Exit 66 when nothing mentions KEY.
    """
    from syncd.state.lineage import detect
    from syncd.state.lineage import to_json as trace_json
    from syncd.state.lineage import trace as read_trace

    with open_store(config_path) as store:
        kinds = [key_type] if key_type else detect(store, key)
        events = read_trace(store, key, kinds[0]) if kinds else []  # type: ignore[arg-type]
    if not events:
        raise NotFoundError(f"nothing in the state DB mentions {key!r}")
    if as_json or not stdout_is_tty():
        echo_json(trace_json(events))
        return
    echo(
        f"{key} ({kinds[0]}"
        + (f"; also a {', '.join(kinds[1:])}: --type" if kinds[1:] else "")
        + ")"
    )
    rows = []
    for e in events:
        rows.append({"time": when(e.at, True), "event": e.event, "details": e.details})
        if e.origin:  # a line of its own, so a long detail never cuts it off
            rows.append({"time": "", "event": "", "details": f"  from {e.origin}"})
    table(rows, ["time", "event", "details"], {"details": 160})
