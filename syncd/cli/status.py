"""`syncd status` (the daemon, the jobs' runs, what needs attention) and `syncd jobs`."""

from __future__ import annotations

from pathlib import Path

import click

from syncd.cli.common import (
    cell,
    config_option,
    echo,
    echo_json,
    handle_errors,
    json_option,
    open_store,
    settings_for,
    stdout_is_tty,
    table,
    when,
)

WARNINGS_SHOWN = 5  # per job in `syncd status` (all of them: --json)


@click.command()
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
    from syncd.clock import ago, duration_text, parse_iso
    from syncd.status import backfill_text, status_screen, throttled_text, warning_text

    settings = settings_for(config_path)
    with open_store(config_path) as store:
        report = status_screen(store, settings)
    if as_json:
        echo_json(report)
        return
    local = stdout_is_tty()
    now = parse_iso(report["now"])
    daemon = report["daemon"]
    if daemon["running"]:
        since = when(daemon["started_at"], local)
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
    for row in report["backfills"]:  # requested or running (syncd backfill --show ID)
        echo(f"Backfill: {backfill_text(row)}")
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
    table(
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
                echo(f"  {job['job']}: {cell(warning_text(warning), 240)}")
            if len(job["warnings"]) > WARNINGS_SHOWN:
                echo(f"  {job['job']}: ... and {len(job['warnings']) - WARNINGS_SHOWN} more")
    echo("\nOutbox pending:")
    table(
        [
            {"destination": k, **v, "oldest": when(v["oldest"], local)}
            for k, v in report["outbox_pending"].items()
        ],
        ["destination", "pending", "retrying", "oldest"],
    )
    echo("\nOpen rejects:")
    table([{"source": k, "open": v} for k, v in report["rejects_open"].items()], ["source", "open"])
    echo("\nOpen alerts:")
    table(
        [{**a, "opened_at": when(a["opened_at"], local)} for a in report["alerts_open"]],
        ["id", "kind", "subject", "opened_at", "count", "message"],
        {"message": 100},
    )


@click.command("jobs")
@config_option
@json_option
@handle_errors
def jobs_cmd(config_path: Path | None, as_json: bool) -> None:
    """The jobs syncd knows, whether enabled, and when they run."""
    from syncd.jobs import REGISTRY

    settings = settings_for(config_path)
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
        echo_json(rows)
    else:
        table(rows, ["job", "enabled", "schedule", "description"])
