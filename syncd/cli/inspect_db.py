"""`syncd inspect`: the state DB read-only in Datasette."""

from __future__ import annotations

from pathlib import Path

import click

from syncd.cli.common import (
    config_option,
    echo,
    handle_errors,
    settings_for,
)


@click.command("inspect", short_help="Browse the state DB read-only in Datasette.")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", default=8001, show_default=True, help="Port (0 picks a free one).")
@config_option
@handle_errors
def inspect_cmd(host: str, port: int, config_path: Path | None) -> None:
    """Serve the state DB read-only in Datasette on loopback, with a description of every
    table and column and canned queries (open rejects by reason, what is stuck in the
    outbox, lag per stream, today's DSOrder orders in the loop, alerts, last run per job).
    Needs the extra: pip install 'syncd[inspect]'. Stop it with Ctrl-C."""
    from syncd.inspector import serve

    settings = settings_for(config_path)
    echo(f"syncd inspect: http://{host}:{port}/ (read-only; Ctrl-C stops it)", err=True)
    serve(settings.db_path, host, port)
