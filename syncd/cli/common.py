"""What every `syncd` command shares: printing through the redactor, the one place a
SyncdError becomes a message and its exit status, the --config and --json options,
loading the settings and opening the state DB, and the text table."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from syncd.config import Settings, load_settings, secret_values
from syncd.errors import NotFoundError, SyncdError
from syncd.logs import redactor

if TYPE_CHECKING:  # imported late (start-up time)
    from syncd.state import Store

P = ParamSpec("P")
R = TypeVar("R")

# sysexits(3), the one table of exit statuses (README "Exit statuses"): each SyncdError
# class carries its own (syncd/errors.py); the root group (syncd/cli/__init__.py) maps
# click's usage errors to 64.
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


def settings_for(config_path: Path | None, required: bool = False) -> Settings:
    from syncd.jobs import validate_jobs

    settings = load_settings(config_path, required=required)
    redactor.set_secrets(secret_values(settings))
    validate_jobs(settings)
    return settings


def open_store(config_path: Path | None) -> Store:
    from syncd.state import Store

    settings = settings_for(config_path)
    if not settings.db_path.exists():
        raise NotFoundError(
            f"no state DB at {settings.db_path} yet (has syncd run with this config?)"
        )
    return Store.open(settings.db_path, migrate=False)


def table(
    rows: list[dict[str, Any]], columns: list[str], widths: dict[str, int] | None = None
) -> None:
    if not rows:
        echo("(none)")
        return
    widths = widths or {}
    cells = [[cell(r.get(c), widths.get(c, 60)) for c in columns] for r in rows]
    sizes = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    echo("  ".join(c.ljust(sizes[i]) for i, c in enumerate(columns)).rstrip())
    for row in cells:
        echo("  ".join(v.ljust(sizes[i]) for i, v in enumerate(row)).rstrip())


def cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def echo_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, default=str))


def complete_jobs(
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


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def when(text: str | None, local: bool) -> str:
    """A stored ISO-8601 UTC time as shown: local with its zone on a terminal (where a
    person reads it), unchanged elsewhere (where a script may)."""
    if not text or not local:
        return text or ""
    from syncd.clock import parse_iso

    return parse_iso(text).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def parse_since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
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


offset_option = click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows to skip (the next page: --offset 100).",
)


def echo_page(
    rows: list[dict[str, Any]],
    total: int,
    limit: int,
    offset: int,
    *,
    as_json: bool,
    columns: list[str],
    widths: dict[str, int],
) -> None:
    """One page of a listing, as a table or JSON rows, then the line saying which rows of
    how many it shows (on stderr with --json, so that stdout stays one JSON document)."""
    if as_json:
        echo_json(rows)
    else:
        table(rows, columns, widths)
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
