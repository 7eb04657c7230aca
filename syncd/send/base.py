"""What the sender asks of a destination, and the one failure every destination may raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from syncd.config import Settings
from syncd.errors import RetryableError
from syncd.state import Intent

Outcome = Literal["sent", "already_done", "rejected"]
"""What became of an intent, as a destination's `on_outcome` hook is told."""


class DestinationOutage(RetryableError):
    """The destination as a whole cannot take anything now (not this intent's fault).

    Raised e.g. by the host outbox when the local filesystem refuses a write
    (EACCES, EROFS, ENOSPC, a missing or replaced directory): retried for as
    long as it lasts, never given up into rejects.
    """


class Destination(Protocol):
    """A remote (or the host outbox directory) that accepts intents of some kinds.

    A destination may set `stop_key_on_reject = True`: a rejected intent then holds
    back the later intents of its key until the reject is retried or dropped.

    A destination may define `defer(store, intent) -> str | None`: a reason to leave
    the intent pending for now (it waits for others it depends on, e.g. an order for
    the upload of its articles). A deferred intent costs no attempt; its key waits
    until the next drain.

    A destination may also define `on_outcome(store, intent, outcome, detail)`;
    the sender calls it inside the transaction that records the outcome
    ("sent", "already_done" or "rejected"), so a job's own record of what the
    remote accepted moves together with the outbox row.
    """

    def send(self, intent: Intent) -> object:
        """Deliver one intent; return what to record, or raise a RemoteError subclass."""
        ...

    def close(self) -> None: ...


DestinationFactory = Callable[[Settings], Destination]
"""Builds a destination for one drain (the sender closes it afterwards)."""
