"""`syncd health`: exit statuses for monitoring (its own, not sysexits)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from syncd.cli.common import (
    config_option,
    echo,
    echo_json,
    json_option,
    settings_for,
)


@click.command(short_help="Exit 0 healthy, 1 degraded, 2 critical: for monitoring.")
@click.option(
    "--daemon/--no-daemon",
    "expect_daemon",
    default=None,
    help="Whether a running daemon is expected [default: health.expect_daemon, true].",
)
@config_option
@json_option
def health(expect_daemon: bool | None, config_path: Path | None, as_json: bool) -> None:
    """Exit 0 healthy, 1 degraded, 2 critical (3: could not check), by the rules of
    README "Health for monitoring". The first line is a Nagios/Icinga summary; one line
    per check follows."""
    from syncd.health import EXIT_UNKNOWN, check, text_lines

    try:
        report = check(settings_for(config_path), expect_daemon=expect_daemon)
    except Exception as exc:  # any failure to check is UNKNOWN, never a false WARNING
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if as_json:
            echo_json({"status": "unknown", "exit_code": EXIT_UNKNOWN, "summary": reason})
        else:
            echo(f"SYNCD UNKNOWN - cannot check: {reason}")
            for line in str(exc).splitlines()[1:]:
                echo(line)
        sys.exit(EXIT_UNKNOWN)
    if as_json:
        echo_json(report.as_dict())
    else:
        for line in text_lines(report):
            echo(line)
    sys.exit(report.exit_code)
