"""`syncd run` (the daemon) and `syncd once` (one job now)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from syncd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    complete_jobs,
    config_option,
    echo,
    handle_errors,
    settings_for,
    stderr_is_tty,
)
from syncd.config import refuse_unwritable, secret_values
from syncd.errors import UsageError


@click.command()
@config_option
@handle_errors
def run(config_path: Path | None) -> None:
    """Run the daemon in the foreground (systemd: Type=notify)."""
    from syncd.daemon import run_daemon

    sys.exit(run_daemon(config_path))


@click.command()
@click.argument("job", shell_complete=complete_jobs)
@click.option(
    "--dry-run", is_flag=True, help="Compute and print what would be pushed; change nothing."
)
@config_option
@handle_errors
def once(job: str, dry_run: bool, config_path: Path | None) -> None:
    """Run one JOB now and exit (1 when the run fails).

    Refused (75) while a daemon runs on the same state: send it SIGUSR1 instead.
    `--dry-run` works alongside a running daemon.
    """
    from syncd import ratebudget
    from syncd.errors import AlreadyRunningError
    from syncd.jobs import REGISTRY
    from syncd.jobs.runner import run_job
    from syncd.logs import configure_logging, redactor
    from syncd.metrics.expose import Exposure
    from syncd.progress import TerminalProgress, no_progress
    from syncd.state import StateLock, Store
    from syncd.state.ratebudget import BudgetTable

    if job not in REGISTRY:
        raise UsageError(f"unknown job {job!r} (known: {', '.join(sorted(REGISTRY))})")
    settings = settings_for(config_path, required=True)
    refuse_unwritable(settings)
    # A person at a terminal sees long work move (stderr); piped, nothing changes.
    progress = TerminalProgress(sys.stderr) if stderr_is_tty() else no_progress
    log_stream = progress.log_stream() if isinstance(progress, TerminalProgress) else sys.stderr
    configure_logging(
        settings.logging.level,
        settings.logging.format,
        stream=log_stream,
        priority_prefix=settings.logging.priority_prefix,
    )
    redactor.set_secrets(secret_values(settings))
    lock = StateLock(settings.daemon.state_dir)
    if not dry_run:
        # One writer of jobs per state directory: a running daemon runs jobs on SIGUSR1.
        try:
            lock.acquire()
        except AlreadyRunningError as exc:
            raise AlreadyRunningError(
                f"{exc}; to run jobs in the running daemon now, send it SIGUSR1 "
                "(systemctl kill -s USR1 syncd)"
            ) from None
    try:
        if not dry_run:  # a dry run works on a copy: it neither creates nor migrates the DB
            with Store.open(settings.db_path) as store:  # create or migrate first
                store.mark_abandoned_runs()  # a killed `once` left its run 'running'
            ratebudget.install(BudgetTable(settings.db_path))  # the daemon's budget, kept
        try:
            result = run_job(
                REGISTRY[job], settings, trigger="cli", dry_run=dry_run, progress=progress
            )
        finally:
            if isinstance(progress, TerminalProgress):
                progress.close()
        if not dry_run:
            Exposure(lambda: settings).write_textfile()  # metrics.textfile, if set
    finally:
        ratebudget.uninstall()
        lock.release()
    if dry_run:
        echo(
            f"dry run of {job} (on a copy of the state; nothing was changed): "
            f"{len(result.intents)} push(es) would be queued"
        )
        for intent in result.intents:
            echo(
                f"  {intent['destination']} {intent['kind']} {intent['order_key']}: {intent['payload']}"
            )
    echo(
        f"{job}: {result.status} {json.dumps(result.counts)}"
        + (f" error: {result.error}" if result.error else "")
    )
    sys.exit(EXIT_OK if result.status in ("ok", "dry-run") else EXIT_FAILED)
