"""`syncd checkpoints`: list or reset stream checkpoints."""

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
def checkpoints() -> None:
    """Inspect or reset stream checkpoints."""


@checkpoints.command("list")
@config_option
@json_option
@handle_errors
def checkpoints_list(config_path: Path | None, as_json: bool) -> None:
    """List every stream's checkpoint."""
    from syncd.state import queries

    with open_store(config_path) as store:
        rows = queries.checkpoints(store, with_run_id=True)
    echo_json(rows) if as_json else table(rows, ["stream", "value", "updated_at", "run_id"])


@checkpoints.command("reset")
@click.argument("stream")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
@handle_errors
def checkpoints_reset(stream: str, yes: bool, config_path: Path | None) -> None:
    """Forget STREAM's checkpoint so its next run starts over (a backfill)."""
    with open_store(config_path) as store:
        current = store.get_checkpoint(stream)
        if current is None:
            raise NotFoundError(f"no checkpoint named {stream!r} (see `syncd checkpoints list`)")
        if not yes:
            click.confirm(
                f"Reset {stream} (now {current!r})? Its next run pulls everything again", abort=True
            )
        store.reset_checkpoint(stream)
    echo(f"checkpoint {stream} reset (was {current!r})")
