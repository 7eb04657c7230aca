"""`syncd sandbox`: run a local simulator of a remote system."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., None])


def serve_options(port: int, seed_help: str) -> Callable[[F], F]:
    """--host, --port and --seed, which every simulator takes (only the default port and
    what the seed generates differ)."""

    def add(command: F) -> F:
        for option in (
            click.option("--seed", default=0, show_default=True, help=seed_help),
            click.option(
                "--port", default=port, show_default=True, help="Port (0 picks a free one)."
            ),
            click.option(
                "--host", default="127.0.0.1", show_default=True, help="Loopback address to bind."
            ),
        ):
            command = option(command)
        return command

    return add


@click.group()
def sandbox() -> None:
    """Run a local simulator of a remote system (trials, the demo)."""


@sandbox.command("instock")
@serve_options(port=8765, seed_help="Seed of the generated data.")
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
@click.option(
    "--pick-moves",
    type=click.Choice(["at_done", "before_done"]),
    default="at_done",
    show_default=True,
    help="When a customer order's pick moves are written (the document does not say): as "
    "it turns done, or a step before, while it is still reserved.",
)
@click.option(
    "--placed-at-text",
    type=click.Choice(["as_sent", "normalized"]),
    default="as_sent",
    show_default=True,
    help="How an order's placed_at reads back (the document does not say): the text sent, "
    "or the instant as whole seconds UTC with a Z.",
)
@click.option(
    "--duplicate-order-ids",
    type=click.Choice(["refuse", "accept"]),
    default="refuse",
    show_default=True,
    help="A create with an order id Instock has: refused as existing, or taken again.",
)
def sandbox_instock(
    host: str,
    port: int,
    seed: int,
    articles: int,
    token: str | None,
    order_list_order: str,
    pick_moves: str,
    placed_at_text: str,
    duplicate_order_ids: str,
) -> None:
    """Serve a seeded Instock simulator until SIGINT/SIGTERM."""
    from syncd.sandbox import instock

    instock.run(
        host,
        port,
        seed,
        articles,
        token or instock.DEFAULT_TOKEN,
        order_list_order,
        pick_moves=pick_moves,
        placed_at_text=placed_at_text,
        duplicate_order_ids=duplicate_order_ids,
    )


@sandbox.command("dsorder")
@serve_options(port=8766, seed_help="Seed of the generated orders.")
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
@serve_options(port=8767, seed_help="Seed of the generated orders.")
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
@serve_options(port=8768, seed_help="Seed of the simulated data.")
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
@serve_options(port=8769, seed_help="Seed of the simulated data.")
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
