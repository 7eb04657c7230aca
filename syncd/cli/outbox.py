"""`syncd outbox`: inspect push intents."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from syncd.cli.common import (
    config_option,
    echo_page,
    handle_errors,
    json_option,
    offset_option,
    open_store,
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
@offset_option
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
    echo_page(
        rows,
        total,
        limit,
        offset,
        as_json=as_json,
        columns=[
            "id",
            "destination",
            "kind",
            "order_key",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
        ],
        widths={"last_error": 60},
    )
