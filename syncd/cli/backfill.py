"""`syncd backfill`: pull a past period of a stream again, beside its live cursor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from syncd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    config_option,
    echo,
    echo_json,
    handle_errors,
    json_option,
    open_store,
    parse_since,
    settings_for,
    stderr_is_tty,
    table,
)
from syncd.errors import UsageError

EPILOG = """\b
Streams: instock.moves, instock.orders, dsorder.pull (today only: DSOrder lists
nothing older). WHEN: an ISO-8601 time (UTC unless it says) or a duration ago (2h, 7d).
\b
Examples:
  syncd backfill instock.moves --from 2026-12-01T06:00Z --to 2026-12-01T18:00Z --dry-run
  syncd backfill instock.orders --from 3d --to 1h
  syncd backfill --list
  syncd backfill --cancel 4
"""


@click.command(epilog=EPILOG)
@click.argument("stream", required=False)
@click.option("--from", "start", callback=parse_since, metavar="WHEN", help="Period start.")
@click.option("--to", "end", callback=parse_since, metavar="WHEN", help="Period end.")
@click.option("--dry-run", is_flag=True, help="Print the differences; change nothing.")
@click.option(
    "--no-wait", is_flag=True, help="With a running daemon: leave the request to it and return."
)
@click.option("--list", "list_all", is_flag=True, help="The latest backfills.")
@click.option("--show", type=int, metavar="ID", help="One backfill and what it found.")
@click.option("--cancel", type=int, metavar="ID", help="Cancel a requested or running backfill.")
@config_option
@json_option
@handle_errors
def backfill(
    stream: str | None,
    start: str | None,
    end: str | None,
    dry_run: bool,
    no_wait: bool,
    list_all: bool,
    show: int | None,
    cancel: int | None,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Pull STREAM's period --from .. --to again and apply only what syncd lacks or holds
    otherwise (missing moves journalled and sent once, changed orders updated); the live
    cursor and schedule are untouched.

    With a running daemon the request is written to the state DB and the daemon's
    backfill.requests job runs it (within its schedule, 15 s by default); this command
    follows it to its end (--no-wait: returns at once). Without one, it runs here, under
    the state lock. One backfill per stream at a time: a second is refused (75).
    Exit 0 when it is done (or left to the daemon), 1 when it failed or was cancelled.
    """
    from syncd.state.backfills import cancel_backfill, differences, get_backfill, list_backfills

    if list_all or show is not None or cancel is not None:
        if stream or start or end or dry_run:
            raise UsageError(
                "--list, --show and --cancel take no STREAM, --from, --to or --dry-run"
            )
        with open_store(config_path) as store:
            if cancel is not None:
                done = cancel_backfill(store, cancel)
                echo(f"backfill {done.id} cancelled (what it applied so far stays)")
                return
            if show is not None:
                one = get_backfill(store, show)
                _report(one, differences(store, show), as_json)
                return
            rows = [b.as_json() for b in list_backfills(store)]
        if as_json:
            echo_json(rows)
            return
        columns = ["id", "stream", "period_from", "period_to", "dry_run", "status", "steps"]
        table(rows, [*columns, "found", "missing", "changed", "applied", "updated_at"])
        return
    if not (stream and start and end):
        raise UsageError("give STREAM, --from and --to (or --list, --show ID, --cancel ID)")
    _start(stream, start, end, dry_run, no_wait, config_path, as_json)


def _start(
    stream: str,
    start: str,
    end: str,
    dry_run: bool,
    no_wait: bool,
    config_path: Path | None,
    as_json: bool,
) -> None:
    from syncd.backfill import expected_steps, follow, start_backfill
    from syncd.clock import parse_iso
    from syncd.config import refuse_unwritable
    from syncd.logs import configure_logging
    from syncd.progress import TerminalProgress, no_progress
    from syncd.state.backfills import Backfill

    settings = settings_for(config_path, required=True)
    refuse_unwritable(settings)
    progress = TerminalProgress(sys.stderr) if stderr_is_tty() and not as_json else no_progress
    log_stream = progress.log_stream() if isinstance(progress, TerminalProgress) else sys.stderr
    configure_logging(
        settings.logging.level,
        settings.logging.format,
        stream=log_stream,
        priority_prefix=settings.logging.priority_prefix,
    )
    try:
        outcome = start_backfill(
            settings, stream, parse_iso(start), parse_iso(end), dry_run=dry_run, progress=progress
        )
        if outcome.where == "daemon":
            asked = outcome.backfill
            if not as_json:
                echo(
                    f"backfill {asked.id} requested: the running daemon's backfill.requests "
                    "job takes it"
                    + ("" if no_wait else " (following it; Ctrl-C stops following only)"),
                    err=True,
                )
            if no_wait:
                _report(asked, [], as_json)
                sys.exit(EXIT_OK)
            total = expected_steps(settings, asked)

            def show(current: Backfill) -> None:
                progress(f"backfill {current.id} {current.stream}", current.steps, total)

            try:
                outcome = follow(settings, asked.id, show)
            except KeyboardInterrupt:
                echo(
                    f"\nstopped following; backfill {asked.id} goes on in the daemon "
                    f"(`syncd backfill --show {asked.id}`)",
                    err=True,
                )
                sys.exit(EXIT_OK)
    finally:
        if isinstance(progress, TerminalProgress):
            progress.close()
    _report(outcome.backfill, outcome.differences, as_json)
    if outcome.backfill.active and outcome.where == "here":
        echo(
            f"backfill {outcome.backfill.id} stays running (its run did not finish); it "
            "resumes from its checkpoint in the daemon or `syncd once backfill.requests`",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_FAILED if outcome.backfill.status in ("failed", "cancelled") else EXIT_OK)


def _report(backfill: Any, found: list[dict[str, Any]], as_json: bool) -> None:
    from syncd.backfill import difference_lines, summary

    if as_json:
        echo_json({**backfill.as_json(), "differences": found})
        return
    echo(summary(backfill))
    for line in difference_lines(found):
        echo(line)
