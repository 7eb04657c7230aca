"""`syncd alerts`: list and resolve alerts."""

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
    table,
)
from syncd.errors import NotFoundError


@click.group()
def alerts() -> None:
    """Inspect and resolve alerts (what needs an operator)."""


@alerts.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include resolved alerts.")
@config_option
@json_option
@handle_errors
def alerts_list(show_all: bool, config_path: Path | None, as_json: bool) -> None:
    """List open alerts (all with --all)."""
    from syncd.state import queries

    with open_store(config_path) as store:
        rows = queries.alerts(store, include_resolved=show_all)
    if as_json:
        echo_json(rows)
    else:
        table(
            rows,
            ["id", "kind", "subject", "opened_at", "count", "resolved_at", "message"],
            {"message": 100},
        )


@alerts.command("resolve")
@click.argument("alert_ids", type=int, nargs=-1, required=True)
@config_option
@handle_errors
def alerts_resolve(alert_ids: tuple[int, ...], config_path: Path | None) -> None:
    """Mark alerts as handled. An alert that stops a connector (auth, site_environment,
    site_unknown) is also cleared by a reload (SIGHUP)."""
    with open_store(config_path) as store:
        for alert_id in alert_ids:
            if not store.resolve_alert(alert_id):
                raise NotFoundError(f"no open alert with id {alert_id}")
            echo(f"alert {alert_id}: resolved")
