"""The `syncd` command: a thin layer over the library.

Each command parses options, calls one library function and prints; every
SyncdError becomes a one-line message and its exit status in one place
(`common.handle_errors`). This module holds the root group; each command or
group of commands lives in a module of its own and is added to it below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from syncd import __version__
from syncd.cli import (
    alerts,
    backfill,
    checkpoints,
    config,
    coverage,
    demo,
    health,
    inspect_db,
    orders,
    outbox,
    rejects,
    run,
    sandbox,
    status,
    trace,
)
from syncd.cli.common import EXIT_USAGE


class SyncdGroup(click.Group):
    """The root group: click's usage errors (unknown command or option, a bad value)
    exit with EX_USAGE (64) instead of click's 2, like syncd's own usage errors."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            exc.exit_code = EXIT_USAGE  # type: ignore[misc]  # this instance only
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # the subcommand's name, options and arguments
            exc.exit_code = EXIT_USAGE  # type: ignore[misc]  # this instance only
            raise


MAIN_EPILOG = """\b
Exit statuses (sysexits):
  0   success
  1   a job run failed, or an operation was refused
  64  usage: unknown command, option or job, a bad value
  66  a named thing (reject, alert, checkpoint, order, state DB) does not exist
  75  locked or unusable now (a running daemon, a newer state DB, a backfill of the
      stream pending): try again later
  78  invalid configuration

\b
Shell completion (bash; zsh and fish alike):
  eval "$(_SYNCD_COMPLETE=bash_source syncd)"

\b
Start from the annotated example configuration:
  syncd config example > /etc/syncd/syncd.toml
"""


@click.group(
    cls=SyncdGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=MAIN_EPILOG,
)
@click.version_option(__version__, prog_name="syncd")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SYNCD_CONFIG",
    help="TOML config file for the command [default: /etc/syncd/syncd.toml; env SYNCD_CONFIG].",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """syncd keeps the warehouse host and its remote systems in sync.

    `syncd run` is the daemon (a systemd service); the other commands inspect and
    steer its state DB, and work while it runs. Every command takes --config
    before or after its name, and --help.
    """
    from syncd.lifecycle import restrict_umask

    ctx.obj = {"config_path": config_path}
    restrict_umask()  # before any file is made: state DB, lock, host files


for command in (
    run.run,
    run.once,
    status.status,
    status.jobs_cmd,
    config.check_config,
    config.config_group,
    rejects.rejects,
    orders.orders,
    checkpoints.checkpoints,
    coverage.coverage,
    backfill.backfill,
    trace.trace,
    outbox.outbox,
    demo.demo,
    alerts.alerts,
    health.health,
    inspect_db.inspect_cmd,
    sandbox.sandbox,
):
    main.add_command(command)
