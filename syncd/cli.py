"""The `syncd` command: a thin layer over the library.

Each command parses options, calls one library function and prints; every
SyncdError becomes a one-line message and its exit status here, in one place.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import click

from syncd import __version__
from syncd.config import (
    Settings,
    flatten,
    load_settings,
    redacted_dict,
    refuse_unwritable,
    secret_values,
)
from syncd.errors import NotFoundError, SyncdError, UsageError
from syncd.logs import redactor

if TYPE_CHECKING:  # imported late (start-up time)
    from syncd.state import Store
    from syncd.state.kinds import RejectStatus
    from syncd.state.queries import RejectFilter

P = ParamSpec("P")
R = TypeVar("R")

# sysexits(3), the one table of exit statuses (README "Exit statuses"): each SyncdError
# class carries its own (syncd/errors.py); click's usage errors are mapped to 64 below.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_TEMPFAIL, EXIT_CONFIG = 0, 1, 64, 66, 75, 78


def echo(message: Any = "", err: bool = False) -> None:
    """Print one line through the redactor: whatever a command shows (a remote's
    words in an error, rows written before redaction existed) never carries a secret."""
    click.echo(redactor.text(str(message)), err=err)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SyncdError as exc:
            echo(f"syncd: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


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


def _config_from_root(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Any:
    """`--config` after the subcommand wins; else the one given before it (or the
    environment's $SYNCD_CONFIG, read by the root group)."""
    if value is not None:
        return value
    root = ctx.find_root()
    return (root.obj or {}).get("config_path")


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_config_from_root,
    help="TOML config file, before or after the command [default: /etc/syncd/syncd.toml; "
    "env SYNCD_CONFIG].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _settings(config_path: Path | None, required: bool = False) -> Settings:
    from syncd.jobs import validate_jobs

    settings = load_settings(config_path, required=required)
    redactor.set_secrets(secret_values(settings))
    validate_jobs(settings)
    return settings


def _refuse_unwritable(settings: Settings) -> None:
    """A state or host directory syncd could not write is a config error (78), by key."""
    refuse_unwritable(settings)


def _store(config_path: Path | None) -> Store:
    from syncd.state import Store

    settings = _settings(config_path)
    if not settings.db_path.exists():
        raise NotFoundError(
            f"no state DB at {settings.db_path} yet (has syncd run with this config?)"
        )
    return Store.open(settings.db_path, migrate=False)


def _table(
    rows: list[dict[str, Any]], columns: list[str], widths: dict[str, int] | None = None
) -> None:
    if not rows:
        echo("(none)")
        return
    widths = widths or {}
    cells = [[_cell(r.get(c), widths.get(c, 60)) for c in columns] for r in rows]
    sizes = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    echo("  ".join(c.ljust(sizes[i]) for i, c in enumerate(columns)).rstrip())
    for row in cells:
        echo("  ".join(v.ljust(sizes[i]) for i, v in enumerate(row)).rstrip())


WARNINGS_SHOWN = 5  # per job in `syncd status` (all of them: --json)


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _echo_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, default=str))


MAIN_EPILOG = """\b
Exit statuses (sysexits):
  0   success
  1   a job run failed, or an operation was refused
  64  usage: unknown command, option or job, a bad value
  66  a named thing (reject, alert, checkpoint, order, state DB) does not exist
  75  locked or unusable now (a running daemon, a newer state DB): try again later
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


@main.command()
@config_option
@handle_errors
def run(config_path: Path | None) -> None:
    """Run the daemon in the foreground (systemd: Type=notify)."""
    from syncd.daemon import run_daemon

    sys.exit(run_daemon(config_path))


def _complete_jobs(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of a job's name (`syncd once <TAB>`)."""
    from click.shell_completion import CompletionItem

    from syncd.jobs import REGISTRY

    return [
        CompletionItem(name, help=spec.description)
        for name, spec in sorted(REGISTRY.items())
        if name.startswith(incomplete)
    ]


@main.command()
@click.argument("job", shell_complete=_complete_jobs)
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
    settings = _settings(config_path, required=True)
    _refuse_unwritable(settings)
    # A person at a terminal sees long work move (stderr); piped, nothing changes.
    progress = TerminalProgress(sys.stderr) if _stderr_is_tty() else no_progress
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


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _when(text: str | None, local: bool) -> str:
    """A stored ISO-8601 UTC time as shown: local with its zone on a terminal (where a
    person reads it), unchanged elsewhere (where a script may)."""
    if not text or not local:
        return text or ""
    from syncd.clock import parse_iso

    return parse_iso(text).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


@main.command()
@config_option
@json_option
@handle_errors
def status(config_path: Path | None, as_json: bool) -> None:
    """The daemon, the jobs' runs, and what needs attention.

    The daemon's pid and uptime; per job its schedule, last run (how long ago), result,
    next run, lag since its last success and the last run's counts and warnings;
    pending intents per destination; open rejects and alerts. Times are local with
    their zone on a terminal, ISO-8601 UTC otherwise and with --json. Reads the state
    DB, so it works while the daemon runs.
    """
    from syncd.clock import parse_iso
    from syncd.status import ago, duration_text, status_screen, throttled_text, warning_text

    settings = _settings(config_path)
    with _store(config_path) as store:
        report = status_screen(store, settings)
    if as_json:
        _echo_json(report)
        return
    local = _stdout_is_tty()
    now = parse_iso(report["now"])
    daemon = report["daemon"]
    if daemon["running"]:
        since = _when(daemon["started_at"], local)
        up = f", up {duration_text(daemon['uptime_s'])} (since {since})" if since else ""
        echo(f"Daemon: running, pid {daemon['pid']}{up}")
    else:
        echo("Daemon: not running (no syncd holds the state directory)")
    rejects_open = sum(report["rejects_open"].values())
    echo(
        f"Attention: {rejects_open} open reject(s), {len(report['alerts_open'])} open "
        f"alert(s), {sum(v['pending'] for v in report['outbox_pending'].values())} "
        "intent(s) pending"
    )
    for row in report["throttled"]:  # a 429's Retry-After: every request of it waits
        echo(f"Rate limit: {throttled_text(row)}")
    echo("\nJobs:")
    rows = [
        {
            **job,
            "last run": ago(parse_iso(job["started_at"]), now) if job["started_at"] else "never",
            "result": job["status"] or "",
            "next run": ago(parse_iso(job["next_run"]), now) if job["next_run"] else "",
            "lag": duration_text(job["lag_s"]) if job.get("lag_s") is not None else "",
            "schedule": job["schedule"] if job["enabled"] else f"disabled ({job['schedule']})",
        }
        for job in report["jobs"]
    ]
    _table(
        rows,
        [
            "job",
            "schedule",
            "last run",
            "result",
            "next run",
            "lag",
            "pulled",
            "pushed",
            "rejected",
            "error",
        ],
        {"error": 80},
    )
    warned = [job for job in report["jobs"] if job.get("warnings")]
    if warned:  # e.g. rows held back: nothing failed, but something was not done
        echo("\nWarnings of the last run:")
        for job in warned:
            for warning in job["warnings"][:WARNINGS_SHOWN]:
                echo(f"  {job['job']}: {_cell(warning_text(warning), 240)}")
            if len(job["warnings"]) > WARNINGS_SHOWN:
                echo(f"  {job['job']}: ... and {len(job['warnings']) - WARNINGS_SHOWN} more")
    echo("\nOutbox pending:")
    _table(
        [
            {"destination": k, **v, "oldest": _when(v["oldest"], local)}
            for k, v in report["outbox_pending"].items()
        ],
        ["destination", "pending", "retrying", "oldest"],
    )
    echo("\nOpen rejects:")
    _table(
        [{"source": k, "open": v} for k, v in report["rejects_open"].items()], ["source", "open"]
    )
    echo("\nOpen alerts:")
    _table(
        [{**a, "opened_at": _when(a["opened_at"], local)} for a in report["alerts_open"]],
        ["id", "kind", "subject", "opened_at", "count", "message"],
        {"message": 100},
    )


@main.command("check-config")
@config_option
@json_option
@handle_errors
def check_config(config_path: Path | None, as_json: bool) -> None:
    """Validate the config; print it with secrets redacted.

    Also refused (78): an enabled connector without its secret, an unknown key in
    any `options`, a state (or host) directory syncd could not write.
    """
    settings = _settings(config_path, required=True)
    _refuse_unwritable(settings)
    data = redacted_dict(settings)
    if as_json:
        _echo_json(data)
    else:
        echo(f"# effective configuration from {Settings.source_path or 'defaults'}")
        for key, value in flatten(data):
            echo(f"{key} = {json.dumps(value, default=str)}")
    from syncd.connectors.netstock.settings import config_notes

    for note in config_notes(settings.connectors.netstock):  # which endpoint map, unverified
        echo(note, err=as_json)
    echo("configuration OK", err=True)


@main.group("config")
def config_group() -> None:
    """The annotated example configuration."""


@config_group.command("example")
def config_example() -> None:
    """Print the annotated example configuration: every key, its default and its unit.

    It is installed with syncd (the same text as config/syncd.example.toml):
    `syncd config example > /etc/syncd/syncd.toml`, then fill in the secrets.
    """
    from importlib import resources

    click.echo((resources.files("syncd") / "defaults" / "syncd.example.toml").read_text(), nl=False)


@main.command("jobs")
@config_option
@json_option
@handle_errors
def jobs_cmd(config_path: Path | None, as_json: bool) -> None:
    """The jobs syncd knows, whether enabled, and when they run."""
    from syncd.jobs import REGISTRY

    settings = _settings(config_path)
    rows = [
        {
            "job": name,
            "enabled": spec.is_enabled(settings),
            "schedule": spec.describe_schedule(settings),
            "description": spec.description,
        }
        for name, spec in sorted(REGISTRY.items())
    ]
    if as_json:
        _echo_json(rows)
    else:
        _table(rows, ["job", "enabled", "schedule", "description"])


@main.group()
def rejects() -> None:
    """Inspect, retry or drop rejected input."""


def _parse_since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """`--since`: an ISO-8601 date or time (UTC unless it says), or a duration ago such
    as `2h` or `7d`; becomes the ISO-8601 UTC text the state DB holds."""
    from datetime import UTC, datetime, timedelta

    from syncd.clock import iso, utcnow
    from syncd.config import parse_duration

    if value is None:
        return None
    text = value.strip()
    try:
        return iso(utcnow() - timedelta(seconds=parse_duration(text)))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration ago (2h, 7d) nor an ISO-8601 time"
        ) from None
    return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _check_job(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from syncd.jobs import REGISTRY

    if value is not None and value not in REGISTRY:
        raise click.BadParameter(f"unknown job {value!r} (known: {', '.join(sorted(REGISTRY))})")
    return value


def reject_filters(func: Callable[P, R]) -> Callable[P, R]:
    """The filters `rejects list`, `retry` and `drop` share."""
    for option in reversed(
        [
            click.option(
                "--job",
                callback=_check_job,
                shell_complete=_complete_jobs,
                help="Only rejects recorded by this job's runs.",
            ),
            click.option(
                "--source", help="Only sources starting with this, e.g. host: or outbox:instock."
            ),
            click.option("--reason", help="Only reasons containing this text (any case)."),
            click.option(
                "--since",
                callback=_parse_since,
                metavar="WHEN",
                help="Only rejects created since then: 2h, 7d, 2026-12-01 or an ISO-8601 time.",
            ),
        ]
    ):
        func = option(func)
    return func


def _interactive() -> bool:
    """Ask before bulk changes only when someone is at a terminal to answer."""
    return sys.stdin.isatty()


@rejects.command("list")
@click.option(
    "--status",
    "status_",
    default="open",
    show_default=True,
    type=click.Choice(["open", "retry", "retried", "dropped", "resolved", "all"]),
    help="Only rejects in this status (retry: flagged for their job's next run).",
)
@reject_filters
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Rows per page."
)
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows to skip (the next page: --offset 100).",
)
@config_option
@json_option
@handle_errors
def rejects_list(
    status_: str,
    job: str | None,
    source: str | None,
    reason: str | None,
    since: str | None,
    limit: int,
    offset: int,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """List rejects, oldest first, a page at a time, and how many match in all.

    With --json the rows are printed as a JSON list and the count line goes to stderr.
    """
    from syncd.state import queries

    which = queries.RejectFilter(
        statuses=None if status_ == "all" else (cast("RejectStatus", status_),),
        source=source,
        reason=reason,
        since=since,
        job=job,
    )
    with _store(config_path) as store:
        rows = queries.rejects(store, which, limit, offset)
        total = queries.reject_count(store, which)
    if as_json:
        _echo_json(rows)
    else:
        _table(
            rows,
            ["id", "status", "source", "reference", "field", "reason", "created_at"],
            {"reason": 80},
        )
    note = page_note(len(rows), total, limit, offset)
    if note:
        echo(note, err=as_json)


def page_note(shown: int, total: int, limit: int, offset: int) -> str:
    """Says which rows of how many a page shows and how to see the others; "" when the
    page shows them all."""
    if offset == 0 and shown == total:
        return ""
    if shown == 0:
        return f"(nothing at offset {offset}: {total} in all; --offset 0 shows the first)"
    first, last = offset + 1, offset + shown
    hint = []
    if last < total:
        hint.append(f"--offset {last} for the next {min(limit, total - last)}")
    if offset > 0:
        hint.append(f"--offset {max(0, offset - limit)} for the previous")
    hint.append(f"--limit {total} for all")
    return f"showing {first}-{last} of {total}; " + ", ".join(hint)


@rejects.command("show")
@click.argument("reject_id", type=int)
@config_option
@json_option
@handle_errors
def rejects_show(reject_id: int, config_path: Path | None, as_json: bool) -> None:
    """Show one reject whole, with its payload."""
    with _store(config_path) as store:
        row = store.get_reject(reject_id)
    if row is None:
        raise NotFoundError(f"no reject with id {reject_id}")
    if as_json:
        _echo_json(row)
        return
    for key, value in row.items():
        echo(f"{key}: {'' if value is None else value}")


def _bulk_ids(
    verb: str,
    reject_ids: tuple[int, ...],
    every: bool,
    which: RejectFilter,
    yes: bool,
    store: Store,
) -> list[int]:
    """The ids a retry or drop works on: those named, else those the filters (or --all)
    select, counted and confirmed at a terminal."""
    from syncd.state import queries

    filtered = every or any(
        value is not None for value in (which.job, which.source, which.reason, which.since)
    )
    if reject_ids and filtered:
        raise UsageError(f"{verb}: name rejects by id or by filters, not both")
    if reject_ids:
        return list(reject_ids)
    if not filtered:
        raise UsageError(
            f"{verb}: name rejects by id, or select them with --job, --source, --reason, "
            "--since (or --all)"
        )
    ids = queries.reject_ids(store, which)
    if ids and not yes and _interactive():
        click.confirm(f"{verb.capitalize()} {len(ids)} reject(s)?", abort=True)
    return ids


def _bulk_options(func: Callable[P, R]) -> Callable[P, R]:
    func = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")(func)
    func = click.option("--all", "every", is_flag=True, help="Every open reject.")(func)
    func = reject_filters(func)
    return click.argument("reject_ids", type=int, nargs=-1)(func)


@rejects.command("retry")
@_bulk_options
@config_option
@handle_errors
def rejects_retry(
    reject_ids: tuple[int, ...],
    job: str | None,
    source: str | None,
    reason: str | None,
    since: str | None,
    every: bool,
    yes: bool,
    config_path: Path | None,
) -> None:
    """Queue rejects again: a refused push is resent, a job's reject is planned again.

    Name them by id, or select every open one that matches --job, --source, --reason
    and --since (or --all); a selection is counted and, at a terminal, confirmed first
    (--yes skips the question). A bad host row is fixed at the source: drop a corrected
    file into the inbox; a selection leaves host rows out and says how many.
    """
    from syncd.state import queries

    which = queries.RejectFilter(
        statuses=("open", "retry"),
        source=source,
        reason=reason,
        since=since,
        job=job,
        exclude_source="host:",
    )
    with _store(config_path) as store:
        ids = _bulk_ids("retry", reject_ids, every, which, yes, store)
        outcomes = _each_reject(
            ids,
            store.retry_reject,
            verbose=bool(reject_ids),
            words={
                "retried": "queued for sending again",
                "retry": "flagged for its job's next run",
            },
        )
        host_rows = _host_rows_left_out(source)
        skipped = (
            0
            if reject_ids or host_rows is None
            else queries.reject_count(
                store, dataclasses.replace(which, source=host_rows, exclude_source=None)
            )
        )
    if not reject_ids:
        echo(
            f"{outcomes['retried']} queued for sending again, {outcomes['retry']} flagged "
            f"for their job's next run"
            + (f"; {skipped} host row(s) left out: fix them at the source" if skipped else "")
        )
    _exit_on_errors(outcomes)


@rejects.command("drop")
@_bulk_options
@config_option
@handle_errors
def rejects_drop(
    reject_ids: tuple[int, ...],
    job: str | None,
    source: str | None,
    reason: str | None,
    since: str | None,
    every: bool,
    yes: bool,
    config_path: Path | None,
) -> None:
    """Mark rejects as dropped (kept for the record, never retried).

    Name them by id, or select every open one that matches --job, --source, --reason
    and --since (or --all); a selection is counted and, at a terminal, confirmed first
    (--yes skips the question).
    """
    from syncd.state import queries

    which = queries.RejectFilter(
        statuses=("open", "retry"), source=source, reason=reason, since=since, job=job
    )
    with _store(config_path) as store:
        ids = _bulk_ids("drop", reject_ids, every, which, yes, store)

        def drop(reject_id: int) -> str:
            store.drop_reject(reject_id)
            return "dropped"

        outcomes = _each_reject(ids, drop, verbose=bool(reject_ids), words={"dropped": "dropped"})
    if not reject_ids:
        echo(f"{outcomes['dropped']} dropped")
    _exit_on_errors(outcomes)


def _host_rows_left_out(source: str | None) -> str | None:
    """The host rows a selection for retry matched but left out, as a source prefix; None
    when `--source` selects none."""
    if source is None or "host:".startswith(source):
        return "host:"
    return source if source.startswith("host:") else None


def _each_reject(
    ids: list[int], act: Callable[[int], str], *, verbose: bool, words: dict[str, str]
) -> Counter[str]:
    """Act on each reject in its own transaction; one that cannot be acted on is said
    and counted, and the others still are."""
    outcomes: Counter[str] = Counter(dict.fromkeys(words, 0))
    for reject_id in ids:
        try:
            outcome = act(reject_id)
        except SyncdError as exc:
            echo(f"syncd: {exc}", err=True)
            outcomes[f"error:{exc.exit_code}"] += 1
            continue
        outcomes[outcome] += 1
        if verbose:
            echo(f"reject {reject_id}: {words[outcome]}")
    return outcomes


def _exit_on_errors(outcomes: Counter[str]) -> None:
    codes = sorted(int(k.split(":")[1]) for k in outcomes if k.startswith("error:"))
    if codes:
        sys.exit(codes[-1])


@main.group()
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
    settings = _settings(config_path)
    spec = REGISTRY["dsorder.pull"]
    with _store(config_path) as store:
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


@main.group()
def checkpoints() -> None:
    """Inspect or reset stream checkpoints."""


@checkpoints.command("list")
@config_option
@json_option
@handle_errors
def checkpoints_list(config_path: Path | None, as_json: bool) -> None:
    """List every stream's checkpoint."""
    from syncd.state import queries

    with _store(config_path) as store:
        rows = queries.checkpoints(store, with_run_id=True)
    _echo_json(rows) if as_json else _table(rows, ["stream", "value", "updated_at", "run_id"])


@checkpoints.command("reset")
@click.argument("stream")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
@handle_errors
def checkpoints_reset(stream: str, yes: bool, config_path: Path | None) -> None:
    """Forget STREAM's checkpoint so its next run starts over (a backfill)."""
    with _store(config_path) as store:
        current = store.get_checkpoint(stream)
        if current is None:
            raise NotFoundError(f"no checkpoint named {stream!r} (see `syncd checkpoints list`)")
        if not yes:
            click.confirm(
                f"Reset {stream} (now {current!r})? Its next run pulls everything again", abort=True
            )
        store.reset_checkpoint(stream)
    echo(f"checkpoint {stream} reset (was {current!r})")


@main.command()
@click.argument("stream", required=False)
@click.option(
    "--since",
    callback=_parse_since,
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

    settings = _settings(config_path)
    with _store(config_path) as store:
        reports = coverage_report(
            store, stream, since=since, now=utcnow(), site_timezone=settings.daemon.site_timezone
        )
    if stream and not reports:
        raise NotFoundError(f"no ledger rows for stream {stream!r} (see `syncd coverage`)")
    if as_json:
        _echo_json([coverage_json(c) for c in reports])
    elif not reports:
        echo("(no ledger rows yet)")
    local = _stdout_is_tty()
    for cov in [] if as_json else reports:
        for line in coverage_text(cov, lambda t: _when(iso(t), local)):
            echo(line)
    if any(c.gaps for c in reports):
        sys.exit(1)


@main.command()
@click.argument("key")
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["dsorder-order", "instock-order", "article", "file", "move"]),
    help="Read KEY as this kind of thing (default: detected from the state DB).",
)
@config_option
@json_option
@handle_errors
def trace(key: str, key_type: str | None, config_path: Path | None, as_json: bool) -> None:
    """Show everything the state DB holds about KEY, in time order.

    KEY is a DSOrder order id, an Instock order id, an article id, a host file name or
    a move (id or move_key). On a terminal: a timeline (local time, event, details);
    piped or with --json: a JSON list. Exit 66 when nothing mentions KEY.
    """
    from syncd.state.lineage import detect
    from syncd.state.lineage import to_json as trace_json
    from syncd.state.lineage import trace as read_trace

    with _store(config_path) as store:
        kinds = [key_type] if key_type else detect(store, key)
        events = read_trace(store, key, kinds[0]) if kinds else []  # type: ignore[arg-type]
    if not events:
        raise NotFoundError(f"nothing in the state DB mentions {key!r}")
    if as_json or not _stdout_is_tty():
        _echo_json(trace_json(events))
        return
    echo(
        f"{key} ({kinds[0]}"
        + (f"; also a {', '.join(kinds[1:])}: --type" if kinds[1:] else "")
        + ")"
    )
    _table(
        [{"time": _when(e.at, True), "event": e.event, "details": e.details} for e in events],
        ["time", "event", "details"],
        {"details": 160},
    )


@main.group()
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
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows to skip (the next page: --offset 100).",
)
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
    with _store(config_path) as store:
        rows = queries.intents(store, status, destination, limit, offset)
        total = queries.intent_count(store, status, destination)
    if as_json:
        _echo_json(rows)
    else:
        _table(
            rows,
            [
                "id",
                "destination",
                "kind",
                "order_key",
                "status",
                "attempts",
                "next_attempt_at",
                "last_error",
            ],
            {"last_error": 60},
        )
    note = page_note(len(rows), total, limit, offset)
    if note:
        echo(note, err=as_json)


@main.command()
@click.option("--duration", default=45.0, show_default=True, help="Seconds to run the daemon.")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Working directory to keep [default: a new temporary directory].",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the simulated data.")
def demo(duration: float, workdir: Path | None, seed: int) -> None:
    """Run syncd against local simulators and show what it did."""
    from syncd.demo import run_demo

    sys.exit(run_demo(duration, workdir, seed))


@main.group()
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

    with _store(config_path) as store:
        rows = queries.alerts(store, include_resolved=show_all)
    if as_json:
        _echo_json(rows)
    else:
        _table(
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
    with _store(config_path) as store:
        for alert_id in alert_ids:
            if not store.resolve_alert(alert_id):
                raise NotFoundError(f"no open alert with id {alert_id}")
            echo(f"alert {alert_id}: resolved")


@main.command(short_help="Exit 0 healthy, 1 degraded, 2 critical: for monitoring.")
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
        report = check(_settings(config_path), expect_daemon=expect_daemon)
    except Exception as exc:  # any failure to check is UNKNOWN, never a false WARNING
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if as_json:
            _echo_json({"status": "unknown", "exit_code": EXIT_UNKNOWN, "summary": reason})
        else:
            echo(f"SYNCD UNKNOWN - cannot check: {reason}")
            for line in str(exc).splitlines()[1:]:
                echo(line)
        sys.exit(EXIT_UNKNOWN)
    if as_json:
        _echo_json(report.as_dict())
    else:
        for line in text_lines(report):
            echo(line)
    sys.exit(report.exit_code)


@main.command("inspect", short_help="Browse the state DB read-only in Datasette.")
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

    settings = _settings(config_path)
    echo(f"syncd inspect: http://{host}:{port}/ (read-only; Ctrl-C stops it)", err=True)
    serve(settings.db_path, host, port)


@main.group()
def sandbox() -> None:
    """Run a local simulator of a remote system (trials, the demo)."""


@sandbox.command("instock")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8765, show_default=True, help="Port (0 picks a free one).")
@click.option("--seed", default=0, show_default=True, help="Seed of the generated data.")
@click.option("--articles", default=1000, show_default=True, help="Number of articles.")
@click.option("--token", default=None, help="Bearer token to accept [default: the sandbox's].")
@click.option(
    "--order-list-order",
    type=click.Choice(["created", "newest_first", "random"]),
    default="created",
    show_default=True,
    help="The order GET orders lists orders in (the document does not say): created "
    "(new orders appended), newest_first, or random.",
)
def sandbox_instock(
    host: str, port: int, seed: int, articles: int, token: str | None, order_list_order: str
) -> None:
    """Serve a seeded Instock simulator until SIGINT/SIGTERM."""
    from syncd.sandbox import instock

    instock.run(host, port, seed, articles, token or instock.DEFAULT_TOKEN, order_list_order)


@sandbox.command("dsorder")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8766, show_default=True, help="Port (0 picks a free one).")
@click.option("--seed", default=0, show_default=True, help="Seed of the generated orders.")
@click.option("--tz", default="Europe/Amsterdam", show_default=True, help="Site time zone.")
@click.option("--orders-per-minute", default=2.0, show_default=True, help="0 stops the generator.")
@click.option("--token", default=None, help="Token to accept [default: the sandbox's].")
@click.option(
    "--closed-wording",
    type=click.Choice(["already", "is_closed", "not_open", "opaque"]),
    default="already",
    show_default=True,
    help="How a closed order's error is worded (the document does not say).",
)
@click.option(
    "--closed-listing",
    type=click.Choice(["listed", "hidden", "status"]),
    default="listed",
    show_default=True,
    help="Whether a closed order stays in /orders/submitted, and with a status.",
)
@click.option("--no-auth", is_flag=True, help="Accept requests without a token.")
@click.option(
    "--auth-header", default="Authorization", show_default=True, help="Header carrying the token."
)
@click.option("--auth-scheme", default="Bearer", show_default=True, help="'' takes a bare token.")
@click.option("--initial-orders", default=5, show_default=True, help="Orders submitted at start.")
@click.option(
    "--articles",
    default="20",
    show_default=True,
    help="A number of generated articles, or comma-separated article ids.",
)
def sandbox_dsorder(
    host: str,
    port: int,
    seed: int,
    tz: str,
    orders_per_minute: float,
    token: str | None,
    closed_wording: str,
    closed_listing: str,
    no_auth: bool,
    auth_header: str,
    auth_scheme: str,
    initial_orders: int,
    articles: str,
) -> None:
    """Serve a DSOrder simulator that submits store orders over the day."""
    from syncd.sandbox import dsorder

    dsorder.run(
        host,
        port,
        seed,
        None if no_auth else token or dsorder.DEFAULT_TOKEN,
        tz,
        orders_per_minute,
        int(articles) if articles.isdigit() else articles.split(","),
        auth_header=auth_header,
        auth_scheme=auth_scheme,
        initial_orders=initial_orders,
        closed_wording=closed_wording,
        closed_listing=closed_listing,
    )


@sandbox.command("netstock")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8767, show_default=True, help="Port (0 picks a free one).")
@click.option("--seed", default=0, show_default=True, help="Seed of the generated orders.")
@click.option(
    "--count-lag",
    default=0.0,
    show_default=True,
    help="Seconds before imported lines show in /model/status counts (inf: never).",
)
@click.option(
    "--model-end",
    type=click.Choice(["deferred", "immediate"]),
    default="deferred",
    show_default=True,
    help="deferred: /model/end answers 202 and a wrong count fails later (the document); "
    "immediate: 400 at once.",
)
@click.option(
    "--endpoint-map",
    type=click.Choice(["corrected", "document"]),
    default="corrected",
    show_default=True,
    help="Import URLs: corrected (/import/master, /import/transfers) or as the document "
    "prints them (master at /import/suppliers, transfers at /import/co).",
)
@click.option(
    "--nulls",
    type=click.Choice(["accept", "refuse"]),
    default="accept",
    show_default=True,
    help="A null in an import line's typed field: accepted, or refused with a 400 naming it "
    "(the document does not say).",
)
@click.option("--username", default=None, help="Login to accept [default: the sandbox's].")
@click.option("--password", default=None, help="Password to accept [default: the sandbox's].")
@click.option("--client-id", default=None, help="Client id to accept [default: the sandbox's].")
@click.option(
    "--scope", default=None, help="Scope to require ('' accepts any) [default: the sandbox's]."
)
@click.option("--expires-in", default=3600, show_default=True, help="Token lifetime, seconds.")
@click.option("--initial-files", default=2, show_default=True, help="Queued files per pop type.")
@click.option(
    "--phases",
    default=None,
    help="Seconds a dataset spends in Importing, Importing_complete, Transforming and "
    "Copying_po_db, comma-separated (e.g. 1,1,4,2) [default: the sandbox's].",
)
def sandbox_netstock(
    host: str,
    port: int,
    seed: int,
    count_lag: float,
    model_end: str,
    endpoint_map: str,
    nulls: str,
    username: str | None,
    password: str | None,
    client_id: str | None,
    scope: str | None,
    expires_in: int,
    initial_files: int,
    phases: str | None,
) -> None:
    """Serve a Netstock Data Orchestrator simulator (token, datasets, pops)."""
    from syncd.sandbox import netstock

    try:
        phase_seconds = netstock.DEFAULT_PHASES if phases is None else netstock.parse_phases(phases)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--phases") from None
    netstock.run(
        host,
        port,
        seed,
        username=netstock.DEFAULT_USERNAME if username is None else username,
        password=netstock.DEFAULT_PASSWORD if password is None else password,
        client_id=netstock.DEFAULT_CLIENT_ID if client_id is None else client_id,
        scope=netstock.DEFAULT_SCOPE if scope is None else scope or None,
        expires_in=expires_in,
        initial_files=initial_files,
        phases=phase_seconds,
        count_lag=count_lag,
        model_end=model_end,
        endpoints=endpoint_map,
        nulls=nulls,
    )


@sandbox.command("import-jobs")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8768, show_default=True, help="Port (0 picks a free one).")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated data.")
@click.option(
    "--row-index",
    type=click.Choice(["zero", "one", "none"]),
    default="zero",
    show_default=True,
    help="A row error's `row`: 0-based, 1-based, or absent (the document shows no error).",
)
@click.option("--no-error-key", is_flag=True, help="Row errors without the row's natural key.")
@click.option(
    "--failed-count",
    type=click.Choice(["rows", "errors"]),
    default="rows",
    show_default=True,
    help="What failedCount counts: refused rows, or errors.",
)
@click.option(
    "--processed-count",
    type=click.Choice(["all", "imported"]),
    default="all",
    show_default=True,
    help="What processedCount counts: every row looked at, or only the rows imported.",
)
@click.option(
    "--append",
    "append_kinds",
    multiple=True,
    type=click.Choice(
        ["catalog", "inventory", "suppliers", "purchase-orders", "orders", "demand-history"]
    ),
    help="An import that adds a row sent again beside the first (demand: into its week) "
    "instead of replacing it; repeatable.",
)
@click.option(
    "--omitted",
    type=click.Choice(["reset", "keep"]),
    default="reset",
    show_default=True,
    help="A field left out of an update: takes the documented default (reset) or keeps "
    "the stored value.",
)
@click.option("--api-key", default=None, help="Key to accept [default: the sandbox's].")
@click.option(
    "--read-only-key",
    default=None,
    help="A key that may only read ('' for none) [default: the sandbox's].",
)
@click.option(
    "--pending-seconds", default=1.0, show_default=True, help="Seconds a job stays pending."
)
@click.option(
    "--rows-per-second", default=200.0, show_default=True, help="Processing speed (0: at once)."
)
def sandbox_import_jobs(
    host: str,
    port: int,
    seed: int,
    row_index: str,
    no_error_key: bool,
    failed_count: str,
    processed_count: str,
    append_kinds: tuple[str, ...],
    omitted: str,
    api_key: str | None,
    read_only_key: str | None,
    pending_seconds: float,
    rows_per_second: float,
) -> None:
    """Serve an import-jobs planning API simulator (202 jobs processed in the background).

    The options switch it to the readings of the document syncd does not assume (README:
    "Where the import-jobs document is silent").
    """
    from syncd.sandbox import import_jobs

    import_jobs.run(
        host,
        port,
        seed,
        import_jobs.DEFAULT_API_KEY if api_key is None else api_key,
        read_only_key=(
            import_jobs.DEFAULT_READ_ONLY_KEY if read_only_key is None else read_only_key or None
        ),
        pending_seconds=pending_seconds,
        rows_per_second=rows_per_second,
        shape=import_jobs.AnswerShape(
            row_index=row_index,  # type: ignore[arg-type]
            error_key=not no_error_key,
            failed_count=failed_count,  # type: ignore[arg-type]
            processed_count=processed_count,  # type: ignore[arg-type]
        ),
        append=append_kinds,
        omitted=omitted,  # type: ignore[arg-type]
    )


@sandbox.command("oregon-siop")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8769, show_default=True, help="Port (0 picks a free one).")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated data.")
@click.option("--api-key", default=None, help="Key to accept [default: the sandbox's].")
@click.option("--no-auth", is_flag=True, help="Accept requests without a key.")
@click.option(
    "--error-style",
    type=click.Choice(["json", "document"]),
    default="json",
    show_default=True,
    help="A 400's body: problem-details JSON, or the document's own broken layout (not JSON).",
)
@click.option(
    "--conversion-errors",
    type=click.Choice(["all", "first"]),
    default="all",
    show_default=True,
    help="A 400 reports every value that cannot be converted, or only the first "
    "(as ASP.NET's deserializer does).",
)
def sandbox_oregon_siop(
    host: str,
    port: int,
    seed: int,
    api_key: str | None,
    no_auth: bool,
    error_style: str,
    conversion_errors: str,
) -> None:
    """Serve an Oregon Tool SIOP simulator (documented limits and error shape)."""
    from syncd.sandbox import oregon_siop

    oregon_siop.run(
        host,
        port,
        seed,
        None if no_auth else api_key or oregon_siop.DEFAULT_API_KEY,
        error_style=error_style,  # type: ignore[arg-type]
        conversion_errors=conversion_errors,  # type: ignore[arg-type]
    )


if __name__ == "__main__":  # pragma: no cover
    main()
