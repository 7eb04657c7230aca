"""One rate budget per remote system, shared by every job of it and the sender.

A connector's requests come from several jobs and the sender, on different threads of
one daemon: each taking its own tokens would multiply the rate the remote sees. So
`HttpClient` takes its tokens from one `RateBudget` per connector name, found here.
A 429 with Retry-After parks the whole budget until then: every request of that
connector waits for it (or is refused with the moment, if that is past its deadline)
instead of each job meeting the 429 and retrying on its own.

The arithmetic (`refill`, `take`, `throttle`) is pure over plain values. The budget
survives a restart through a `BudgetStore` (the state DB's `rate_budget` table,
`syncd.state.ratebudget`), which the daemon and `syncd once` install with `install`.
Without one (a dry run, a test of one client), each client has a budget of its own and
nothing is written.

Writes are few by design: a DB write per request would cost the inventory pull its
throughput. The bucket is written when `PERSIST_INTERVAL` has passed since the last
write, when it runs empty (the moment it matters), on a park, and when the process
closes it. After a kill -9 the stored bucket is at most `PERSIST_INTERVAL` old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from syncd.sections import RateLimit

PERSIST_INTERVAL = 1.0  # seconds: the most a stored bucket lags the live one


@dataclass(frozen=True)
class Bucket:
    """Tokens at a wall-clock moment (seconds since the epoch); negative tokens are
    requests already promised a slot, waiting for it."""

    tokens: float
    at: float
    parked_until: float = 0.0
    park_reason: str = ""


@dataclass(frozen=True)
class Take:
    """The bucket after one request took its token, and how long it waits for it."""

    bucket: Bucket
    wait: float


def refill(bucket: Bucket, now: float, per_second: float, burst: int) -> Bucket:
    """The bucket at `now`: tokens grown by the time passed, never above `burst`.
    A clock that went back adds nothing."""
    elapsed = max(0.0, now - bucket.at)
    tokens = min(float(burst), bucket.tokens + elapsed * per_second)
    return replace(bucket, tokens=tokens, at=max(now, bucket.at))


def take(
    bucket: Bucket, now: float, limit: RateLimit, max_wait: float, sat_out: float = 0.0
) -> Take | None:
    """Take one token at `now`: the new bucket and the wait until the request may go
    (the park's end, or its token's slot, whichever is later); None, bucket unchanged,
    when that wait would be longer than `max_wait`. A park ending at or before `sat_out`
    is one this request has already waited for (its own 429's Retry-After)."""
    unlimited = limit.per_second <= 0
    current = bucket if unlimited else refill(bucket, now, limit.per_second, limit.burst)
    parked = current.parked_until > sat_out
    park_wait = max(0.0, current.parked_until - now) if parked else 0.0
    if unlimited:
        token_wait, after = 0.0, current
    else:
        left = current.tokens - 1.0
        token_wait = 0.0 if left >= 0 else -left / limit.per_second
        after = replace(current, tokens=left)
    wait = max(park_wait, token_wait)
    if wait > max_wait:
        return None
    return Take(after, wait)


def throttle(bucket: Bucket, now: float, retry_after: float | None, reason: str) -> Bucket:
    """The bucket after the remote answered 429: emptied (no promised slot is given back),
    and parked until `now + retry_after` when the remote said how long (a later park
    already recorded is kept)."""
    emptied = replace(bucket, tokens=min(bucket.tokens, 0.0))
    if retry_after is None:
        return emptied
    until = now + retry_after
    if until <= bucket.parked_until:
        return emptied
    return replace(emptied, parked_until=until, park_reason=reason)


def should_persist(last_saved: Bucket | None, saved_at: float, bucket: Bucket, now: float) -> bool:
    """Write the bucket when `PERSIST_INTERVAL` has passed since the last write (at
    `saved_at`), or when it has just run empty (where a reset after a crash would let a
    burst through)."""
    if last_saved is None or now - saved_at >= PERSIST_INTERVAL:
        return True
    return bucket.tokens < 1.0 <= last_saved.tokens


class BudgetStore(Protocol):
    """Where budgets outlive the process (the state DB's `rate_budget` table)."""

    def load(self, connector: str) -> Bucket | None: ...

    def save(self, connector: str, bucket: Bucket) -> None: ...

    def close(self) -> None: ...


class Throttled(Exception):
    """A request would wait past its deadline for its token or the park's end."""

    def __init__(self, ready_at: float, reason: str) -> None:
        super().__init__(reason)
        self.ready_at = ready_at
        self.reason = reason


class RateBudget:
    """One connector's token bucket, shared by the threads of one process."""

    def __init__(
        self,
        name: str,
        limit: RateLimit,
        store: BudgetStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.limit = limit
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        loaded = store.load(name) if store is not None else None
        if loaded is not None:  # a smaller burst configured since: capped to it
            loaded = replace(loaded, tokens=min(loaded.tokens, float(limit.burst)))
        self._bucket = loaded or Bucket(tokens=float(limit.burst), at=now)
        self._saved: Bucket | None = loaded
        self._saved_at = now

    @property
    def bucket(self) -> Bucket:
        with self._lock:
            return self._bucket

    def reconfigure(self, limit: RateLimit) -> None:
        """A reloaded configuration: the tokens are kept, capped at the new burst."""
        with self._lock:
            self.limit = limit
            tokens = min(self._bucket.tokens, float(limit.burst))
            self._bucket = replace(self._bucket, tokens=tokens)

    def acquire(self, max_wait: float, sat_out: float = 0.0) -> float:
        """Reserve one request's slot; returns the seconds to wait for it (the caller
        sleeps). Raises Throttled, reserving nothing, when that is past `max_wait`.
        `sat_out`: the end of a park the caller has waited for already."""
        with self._lock:
            now = self._clock()
            taken = take(self._bucket, now, self.limit, max_wait, sat_out)
            if taken is None:
                current = self._bucket
                ready = max(current.parked_until, now + max_wait)
                parked = current.parked_until > now
                reason = (
                    f"parked until the remote's Retry-After ({current.park_reason})"
                    if parked
                    else f"rate limit {self.limit.per_second:g}/s reached"
                )
                raise Throttled(ready, reason)
            self._bucket = taken.bucket
            if self.limit.per_second > 0:  # an unlimited budget has only parks to keep
                self._persist(now, force=False)
            return taken.wait

    def throttled(self, retry_after: float | None, reason: str) -> float:
        """The remote answered 429: every request of this connector waits. Returns the
        end of the park (0 when none)."""
        with self._lock:
            now = self._clock()
            self._bucket = throttle(self._bucket, now, retry_after, reason)
            self._persist(now, force=True)
            return self._bucket.parked_until

    def flush(self) -> None:
        with self._lock:
            self._persist(self._clock(), force=True)

    def _persist(self, now: float, *, force: bool) -> None:
        if self._store is None:
            return
        if force or should_persist(self._saved, self._saved_at, self._bucket, now):
            self._store.save(self.name, self._bucket)
            self._saved, self._saved_at = self._bucket, now


class Budgets:
    """The budgets of one process, one per connector name, persisted in one store."""

    def __init__(self, store: BudgetStore | None, clock: Callable[[], float] = time.time):
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._budgets: dict[str, RateBudget] = {}

    def get(self, name: str, limit: RateLimit) -> RateBudget:
        with self._lock:
            budget = self._budgets.get(name)
            if budget is None:
                budget = RateBudget(name, limit, self.store, self._clock)
                self._budgets[name] = budget
            elif budget.limit != limit:
                budget.reconfigure(limit)
            return budget

    def flush(self) -> None:
        with self._lock:
            budgets = list(self._budgets.values())
        for budget in budgets:
            budget.flush()

    def close(self) -> None:
        """Write every budget and close the store."""
        self.flush()
        if self.store is not None:
            self.store.close()


@dataclass
class _Installed:
    budgets: Budgets | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_INSTALLED = _Installed()


def install(store: BudgetStore | None) -> Budgets:
    """Share one budget per connector in this process from now on, kept in `store`."""
    with _INSTALLED.lock:
        if _INSTALLED.budgets is not None:
            _INSTALLED.budgets.close()
        _INSTALLED.budgets = Budgets(store)
        return _INSTALLED.budgets


def uninstall() -> None:
    """Back to one budget per client (the budgets so far are written first)."""
    with _INSTALLED.lock:
        if _INSTALLED.budgets is not None:
            _INSTALLED.budgets.close()
        _INSTALLED.budgets = None


def budget_for(name: str, limit: RateLimit) -> RateBudget:
    """The shared budget of connector `name`, or a private one when none is installed."""
    with _INSTALLED.lock:
        installed = _INSTALLED.budgets
    if installed is None:
        return RateBudget(name, limit)
    return installed.get(name, limit)
