"""`syncd coverage`: each stream's covered period and its gaps."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from syncd.cli.common import (
    config_option,
    echo,
    echo_json,
    handle_errors,
    json_option,
    open_store,
    parse_since,
    settings_for,
    stdout_is_tty,
    when,
)
from syncd.errors import NotFoundError


@click.command()
@click.argument("stream", required=False)
@click.option(
    "--since",
    callback=parse_since,
    metavar="WHEN",
    help="Only the period since then: 2h, 7d, 2026-12-01 or an ISO-8601 time.",
)
@config_option
@json_option
@handle_errors
def coverage(
    stream: str | None, since: str | None, config_path: Path | None, as_json: bool
) -> None:
    """Each stream's covered period and its gaps, with causes.

    Reads the window ledger (each page or window a pull stored): per stream the period
    covered, the overlap configured and seen between consecutive windows, and each gap
    (start, end, cause: midnight, failed-run or checkpoint-reset, and the failed runs).
    Exit status 0 when no stream has a gap, 1 when one has (a script's check).
    """
    from syncd.clock import iso, utcnow
    from syncd.coverage import coverage_json, coverage_text
    from syncd.state.windows import coverage_report

    settings = settings_for(config_path)
    with open_store(config_path) as store:
        reports = coverage_report(
            store, stream, since=since, now=utcnow(), site_timezone=settings.daemon.site_timezone
        )
    if stream and not reports:
        raise NotFoundError(f"no ledger rows for stream {stream!r} (see `syncd coverage`)")
    if as_json:
        echo_json([coverage_json(c) for c in reports])
    elif not reports:
        echo("(no ledger rows yet)")
    local = stdout_is_tty()
    for cov in [] if as_json else reports:
        for line in coverage_text(cov, lambda t: when(iso(t), local)):
            echo(line)
    if any(c.gaps for c in reports):
        sys.exit(1)
