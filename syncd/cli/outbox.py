"""`syncd outbox`: inspect push intents."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from syncd.cli.common import (
    config_option,
    echo,
    echo_json,
    handle_errors,
    json_option,
    open_store,
    page_note,
    table,
)


@click.group()
def outbox() -> None:
    """Inspect push intents."""


@outbox.command("list")
@click.option(
    "--status",
    "status_",
    default="pending",
    show_default=True,
    type=click.Choice(["pending", "sent", "rejected", "dropped", "all"]),
    help="Only intents in this status.",
)
@click.option("--destination", help="Only intents for this destination, e.g. instock or host.")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows per page, newest first.",
)
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows to skip (the next page: --offset 100).",
)
@config_option
@json_option
@handle_errors
def outbox_list(
    status_: str,
    destination: str | None,
    limit: int,
    offset: int,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """List intents (pending by default), newest first, a page at a time, and how many
    match in all (on stderr with --json)."""
    from syncd.state import queries

    status = None if status_ == "all" else cast(queries.IntentStatus, status_)
    with open_store(config_path) as store:
        rows = queries.intents(store, status, destination, limit, offset)
        total = queries.intent_count(store, status, destination)
    if as_json:
        echo_json(rows)
    else:
        table(
            rows,
            [
                "id",
                "destination",
                "kind",
                "order_key",
                "status",
                "attempts",
                "next_attempt_at",
                "last_error",
            ],
            {"last_error": 60},
        )
    note = page_note(len(rows), total, limit, offset)
    if note:
        echo(note, err=as_json)
