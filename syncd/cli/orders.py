"""`syncd orders`: operator decisions on DSOrder orders held back from Instock."""

from __future__ import annotations

from pathlib import Path

import click

from syncd.cli.common import (
    config_option,
    echo,
    handle_errors,
    open_store,
    settings_for,
)


@click.group()
def orders() -> None:
    """Operator decisions on DSOrder orders held back from Instock."""


@orders.command("release")
@click.argument("order_id")
@click.option("--round", "how", flag_value="round", help="Send fractional lines rounded.")
@click.option(
    "--partial", "how", flag_value="partial", help="Send only the lines Instock can take."
)
@click.option("--cancel", "how", flag_value="cancel", help="Send nothing; report 0 and close.")
@config_option
@handle_errors
def orders_release(order_id: str, how: str | None, config_path: Path | None) -> None:
    """Release a held DSOrder order: --round (fractional quantities rounded half up to
    whole Instock units), --partial (only the lines Instock can take; the rest reported
    as 0) or --cancel (nothing sent to Instock; every line reported as 0, then closed).

    The running daemon sends it with its next outbox drain.
    """
    import uuid

    import structlog

    from syncd.jobs import REGISTRY
    from syncd.jobs.base import JobContext
    from syncd.jobs.dsorder_pull import release_held_order

    if how is None:
        raise click.UsageError("say how: --round, --partial or --cancel")
    settings = settings_for(config_path)
    spec = REGISTRY["dsorder.pull"]
    with open_store(config_path) as store:
        ctx = JobContext(
            job=spec.name,
            run_id=f"orders-release-{uuid.uuid4().hex[:12]}",
            settings=settings,
            store=store,
            log=structlog.get_logger("syncd.cli").bind(job=spec.name),
            options=spec.options(settings),
        )
        outcome = release_held_order(ctx, order_id, how)  # type: ignore[arg-type]
    echo(f"order {order_id}: {outcome}")
