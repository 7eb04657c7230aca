"""`syncd rejects`: list, show, retry or drop rejected input."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from syncd.cli.common import (
    P,
    R,
    complete_jobs,
    config_option,
    echo,
    echo_json,
    echo_page,
    handle_errors,
    json_option,
    offset_option,
    open_store,
    parse_since,
)
from syncd.errors import NotFoundError, SyncdError, UsageError

if TYPE_CHECKING:  # imported late (start-up time)
    from syncd.state import Store
    from syncd.state.kinds import RejectStatus
    from syncd.state.queries import RejectFilter


@click.group()
def rejects() -> None:
    """Inspect, retry or drop rejected input."""


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
                shell_complete=complete_jobs,
                help="Only rejects recorded by this job's runs.",
            ),
            click.option(
                "--source", help="Only sources starting with this, e.g. host: or outbox:instock."
            ),
            click.option("--reason", help="Only reasons containing this text (any case)."),
            click.option(
                "--since",
                callback=parse_since,
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
@offset_option
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
    with open_store(config_path) as store:
        rows = queries.rejects(store, which, limit, offset)
        total = queries.reject_count(store, which)
    echo_page(
        rows,
        total,
        limit,
        offset,
        as_json=as_json,
        columns=["id", "status", "source", "reference", "field", "reason", "created_at"],
        widths={"reason": 80},
    )


@rejects.command("show")
@click.argument("reject_id", type=int)
@config_option
@json_option
@handle_errors
def rejects_show(reject_id: int, config_path: Path | None, as_json: bool) -> None:
    """Show one reject whole, with its payload."""
    with open_store(config_path) as store:
        row = store.get_reject(reject_id)
    if row is None:
        raise NotFoundError(f"no reject with id {reject_id}")
    if as_json:
        echo_json(row)
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
    with open_store(config_path) as store:
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
    with open_store(config_path) as store:
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
