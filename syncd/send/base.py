"""What the sender asks of a destination, and the one failure every destination may raise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final, Literal, Protocol

from syncd import metrics
from syncd.config import Settings
from syncd.errors import RetryableError
from syncd.send.readback import Verdict
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

    A destination that reads the remote back after an unclear attempt holds `readbacks`
    (a `ReadBacks`); the sender adds what it counted to its run's counts.

    A destination may define `expand(store, intent) -> Intent`: the intent as `send`
    takes it, when its payload names rows kept in the state DB instead of carrying them
    (it may raise `PermanentError` when they are gone). Outcomes, rejects and hooks see
    the intent as stored.

    A destination may also define `on_outcome(store, intent, outcome, detail)`;
    the sender calls it inside the transaction that records the outcome
    ("sent", "already_done" or "rejected"), so a job's own record of what the
    remote accepted moves together with the outbox row.
    """

    def send(self, intent: Intent) -> object:
        """Deliver one intent; return what to record, or raise a RemoteError subclass."""
        ...

    def close(self) -> None: ...


READBACK_COUNTS: Final[dict[Verdict, str]] = {
    "applied": "readback_applied",
    "not_applied": "readback_resent",
    "diverged": "readback_diverged",
}
"""A read-back verdict -> the run count it adds to: resolved by the read (done, not sent
again), resent, or diverged (rejected with both versions)."""


class ReadBacks:
    """The read-backs a destination made during one drain: each verdict counts in
    `syncd_readback_total` at once and in the `outbox.send` run's counts (`take`)."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self._counts: Counter[str] = Counter()

    def count(self, verdict: Verdict, n: int = 1) -> None:
        if n <= 0:
            return
        metrics.readback(self.destination, verdict, n)
        self._counts[READBACK_COUNTS[verdict]] += n

    def take(self) -> Counter[str]:
        """The counts since the last take, as run counts (`readback_applied`, ...)."""
        counts, self._counts = self._counts, Counter()
        return counts


DestinationFactory = Callable[[Settings], Destination]
"""Builds a destination for one drain (the sender closes it afterwards)."""
