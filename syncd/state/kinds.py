"""The closed sets of words the core tables store, as types: a status a job or the store
writes is checked by mypy against the schema's CHECK constraints (a test holds the two in
step), so a misspelt status fails the type check, not a row insert at run time."""

from __future__ import annotations

from typing import Literal, get_args

RunStatus = Literal["running", "ok", "failed", "crashed", "interrupted", "dry-run", "skipped"]
"""runs.status: 'running' until finished; 'failed' by a classified error (a remote, the
input, the config); 'crashed' by an unexpected exception (a bug: the traceback is in
`error`); 'interrupted' by a shutdown or a process that died."""

IntentStatus = Literal["pending", "sent", "rejected", "dropped"]
"""outbox.status: 'rejected' is a poisoned intent (a reject points at it)."""

RejectStatus = Literal["open", "retry", "retried", "dropped", "resolved"]
"""rejects.status, the reject lifecycle (see the table in `syncd.state.store`)."""

RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
INTENT_STATUSES: tuple[IntentStatus, ...] = get_args(IntentStatus)
REJECT_STATUSES: tuple[RejectStatus, ...] = get_args(RejectStatus)

AlertKind = Literal[
    # A connector stopped until a reload (syncd.errors.CONNECTOR_STOP_ALERTS).
    "auth",
    "site_environment",
    "site_unknown",
    # A cursor walk that would never end (syncd.errors.PaginationError).
    "pagination",
    # The sender.
    "outbox_destination",
    "outbox_outage",
    "outbox_gave_up",
    # Jobs.
    "dsorder_order_held",
    "dsorder_order_held_escalated",
    "dsorder_midnight_gap",
    "dsorder_order_changed",
    "instock_inventory_guard",
    "netstock_export",
    "netstock_pop",
    "planning_import_ambiguous",
    "planning_import_unaccounted",
    # The host inbox.
    "host_file_refused",
    "host_file_error",
    "host_file_changed",
    "host_feed_guard",
]
"""alerts.kind: every kind syncd opens (the column itself is free text)."""
