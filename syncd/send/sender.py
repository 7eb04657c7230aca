"""The outbox sender: drains push intents to their destinations.

Jobs of the outbox pattern (see `syncd.send`) never call a remote to push; they
record intents (see `Store.add_intents`) in the transaction of the diff that
caused them. The sender then delivers them per destination, in id order per
`order_key`, and decides each outcome:

- success, or the remote's "already exists / already done": marked sent;
- permanent refusal: moved to rejects with the remote's reason;
- retryable failure: rescheduled with backoff; later intents for the same key
  wait; past `max_attempts` or `max_age` it is rejected and an alert opens;
- auth failure: the destination stops for this drain and an alert opens;
- an outage of the destination itself (`DestinationOutage`, e.g. the host outbox
  directory cannot be written): never given up, whatever the attempts or age,
  so no intent lands in rejects for it and no later intent of its key overtakes
  it; the destination stops for this drain, retries with capped backoff, and one
  `outbox_outage` alert stays open until a delivery to it succeeds again.

A kill -9 between "sent" and "marked sent" replays the intent; destinations are
called with natural keys and totals, and connectors map "already done" answers
to `AlreadyDoneError`, so the end state is the same. An attempt that may have been
applied without syncd hearing so (a kill mid-send, a timeout or dropped connection
after sending, a 5xx) leaves the intent `unclear`, and the destination reads the
remote back before the next attempt sends anything (`syncd.send.readback`); what the
reads decided counts in the run (`readback_applied`, `readback_resent`,
`readback_diverged`).
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import structlog

from syncd import metrics
from syncd.clock import iso, parse_iso, utcnow
from syncd.config import OutboxConfig, Settings
from syncd.errors import (
    AlreadyDoneError,
    ConnectorStoppedError,
    DivergedError,
    PermanentError,
    RemoteError,
    RetryableError,
    ShutdownRequested,
)
from syncd.http import collect_request_ids
from syncd.logs import Logger
from syncd.progress import Progress, no_progress
from syncd.send.base import (
    Destination,
    DestinationFactory,
    DestinationOutage,
    Outcome,
    ReadBacks,
)
from syncd.send.destinations import DESTINATIONS
from syncd.state import Intent, Store, queries

log: Logger = structlog.get_logger("syncd.outbox")

OUTAGE_ALERT: Final = "outbox_outage"


def _record_outcome(
    store: Store, destination: Destination, intent: Intent, outcome: Outcome, detail: object
) -> None:
    hook = getattr(destination, "on_outcome", None)
    if hook is not None:
        hook(store, intent, outcome, detail)


@dataclass(frozen=True)
class Decision:
    """What to do with an intent after a failed attempt."""

    action: str  # "retry" or "give_up"
    delay: float = 0.0
    reason: str = ""


CLEAR_RETRY_CODES = frozenset({"throttled", "article_not_yet_uploaded"})


def ended_unclear(exc: BaseException) -> bool:
    """After a failed attempt: may the remote have applied it anyway?

    Yes for a timeout or a dropped connection once the request was on its way, a 5xx,
    an answer no pattern recognises, or a fault of our own mid-send. No where the
    request provably never left (`details.sent` False), was throttled (429) or was
    answered "not yet"."""
    if isinstance(exc, DestinationOutage):
        return False
    if not isinstance(exc, RemoteError):
        return True
    if isinstance(exc.details, dict) and exc.details.get("sent") is False:
        return False
    return exc.status != 429 and exc.code not in CLEAR_RETRY_CODES


def decide_after_failure(
    intent: Intent,
    error: Exception,
    policy: OutboxConfig,
    now: datetime,
    rng: random.Random | None = None,
) -> Decision:
    """Retry with full-jitter backoff (or the remote's Retry-After) until the bounds run out;
    a destination outage is retried with capped backoff for as long as it lasts."""
    attempts = intent.attempts + 1
    age = (now - parse_iso(intent.created_at)).total_seconds()
    if isinstance(error, DestinationOutage):
        # Not this intent's fault, so no bound applies: giving up would leave a gap
        # before the later intents of its key. Capped, un-jittered backoff.
        return Decision("retry", delay=_backoff_ceiling(policy, attempts))
    if attempts >= policy.max_attempts or age >= policy.max_age:
        return Decision(
            "give_up",
            reason=f"gave up after {attempts} attempts over {age:.0f}s; last error: {error}",
        )
    retry_after = error.retry_after if isinstance(error, RemoteError) else None
    if retry_after is not None:
        return Decision("retry", delay=retry_after)
    return Decision("retry", delay=(rng or random).uniform(0, _backoff_ceiling(policy, attempts)))


def _backoff_ceiling(policy: OutboxConfig, attempts: int) -> float:
    exponent = min(attempts - 1, 62)  # 2**n of a huge attempt count would overflow a float
    return float(min(policy.max_backoff, policy.initial_backoff * 2**exponent))


Record = Callable[[], None]  # a write an intent's outcome owes the state DB
TURN: Final = 16  # intents of one destination looked at before the next one's turn


@dataclass
class _Drain:
    """One destination's part of a drain: where it is in its queue, the keys that wait."""

    name: str
    destination: Destination
    blocked: set[str] = field(default_factory=set)  # keys whose earlier intent is not done
    deferred: list[tuple[Intent, str]] = field(default_factory=list)
    batch: deque[Intent] = field(default_factory=deque)  # read, not looked at yet
    carry: deque[Intent] = field(default_factory=deque)  # put off to the next turn
    after_id: int = 0
    active: bool = True  # False once the destination stopped (auth failure, outage)
    seen: int = 0
    total: int = 0

    @property
    def stop_on_reject(self) -> bool:
        return bool(getattr(self.destination, "stop_key_on_reject", False))

    @property
    def defer(self) -> Any:
        return getattr(self.destination, "defer", None)


class Sender:
    """Drains due intents; one instance per thread (it holds a Store)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        destinations: Mapping[str, DestinationFactory] | None = None,
        stopping: threading.Event | None = None,
        run_id: str | None = None,
        now: Callable[[], datetime] = utcnow,
        progress: Progress = no_progress,
    ) -> None:
        self.store = store
        self.progress = progress
        self.settings = settings
        self.destinations = DESTINATIONS if destinations is None else destinations
        self.stopping = stopping or threading.Event()
        self.run_id = run_id
        self.now = now
        self.counts: Counter[str] = Counter()
        self.warnings: list[dict[str, Any]] = []  # what remotes said alongside a success

    def drain(self) -> Counter[str]:
        """Every destination with due intents, `TURN` intents of each in turn: a long queue
        for one (a burst of order creates) does not hold back another's (the closes of
        orders already done). A destination whose intents fall due during the drain joins
        it; the drain ends when a whole round finds nothing more to look at."""
        drains: dict[str, _Drain | None] = {}
        try:
            while True:
                for name in self.store.destinations_with_due_intents():
                    if name not in drains:
                        drains[name] = self._open(name)
                moved = [self._turn(d) for d in drains.values() if d is not None and d.active]
                if not any(moved):
                    return self.counts
        finally:
            self._close_all([d for d in drains.values() if d is not None])

    def drain_destination(self, name: str) -> None:
        """Drain one destination only, until nothing more is due."""
        drain = self._open(name)
        if drain is None:
            return
        try:
            while drain.active and self._turn(drain):
                pass
        finally:
            self._close_all([drain])

    def _open(self, name: str) -> _Drain | None:
        factory = self.destinations.get(name)
        if factory is None:
            self.store.open_alert(
                "outbox_destination",
                f"intents wait for destination {name!r}, which no enabled connector provides",
                subject=name,
            )
            log.error("outbox_no_destination", destination=name)
            return None
        destination = factory(self.settings)
        drain = _Drain(name, destination)
        if drain.stop_on_reject:
            # e.g. DSOrder: no close after a refused fulfilment, until an operator
            # retries that reject (it is sent again) or drops it (the rest goes on).
            drain.blocked.update(
                r[0]
                for r in self.store.db.execute(
                    "SELECT DISTINCT order_key FROM outbox WHERE destination = ? "
                    "AND status = 'rejected'",
                    [name],
                )
            )
        if self.progress is not no_progress:
            drain.total = queries.pending_intent_count(self.store, name)
        return drain

    def _close_all(self, drains: list[_Drain]) -> None:
        """Settle each destination's deferred intents, count its read-backs, close it;
        every one of them, whatever fails."""
        if not drains:
            return
        first, rest = drains[0], drains[1:]
        try:
            try:
                self._settle_deferred(first.name, first.defer, first.deferred)
            finally:
                readbacks = getattr(first.destination, "readbacks", None)
                if isinstance(readbacks, ReadBacks):
                    self.counts.update(readbacks.take())
                first.destination.close()
        finally:
            self._close_all(rest)

    def _turn(self, drain: _Drain) -> bool:
        """Look at up to `TURN` more intents of one destination, in id order per key, and
        deliver the ones that may go; False when there was none to look at.

        The durable steps of a turn are two transactions, not two per intent: before the
        first request, every intent about to be tried is marked attempted (what a kill -9
        mid-send leaves behind: the next attempt reads the remote back first), and after
        the last answer every outcome is recorded at once (an intent is marked sent only
        after its answer). A turn tries one intent per key: a later intent of the same key
        (the close after its order's totals) waits for the next turn, when the earlier
        one's outcome is recorded. A turn holds intents of one kind where the destination
        defers some (an order create waits for its articles' uploads), so the next turn's
        deferral checks see this turn's outcomes."""
        chosen: list[Intent] = []
        keys: set[str] = set()
        later: list[Intent] = []
        looked = 0
        while looked < TURN and drain.active:
            intent = self._next_intent(drain)
            if intent is None:
                break
            if drain.defer is not None and chosen and intent.kind != chosen[0].kind:
                drain.carry.appendleft(intent)
                break
            looked += 1
            if intent.order_key in keys:
                later.append(intent)
            elif self._may_go(drain, intent):
                chosen.append(intent)
                keys.add(intent.order_key)
        if later:
            drain.carry = deque(sorted([*later, *drain.carry], key=lambda i: i.id))
        if chosen:
            self._deliver_all(drain, chosen)
        return looked > 0

    def _next_intent(self, drain: _Drain) -> Intent | None:
        """The next intent of the destination: one a turn put off first, else the next of
        its queue (read `outbox.batch_size` at a time)."""
        if drain.carry:
            return drain.carry.popleft()
        if not drain.batch:
            size = self.settings.outbox.batch_size
            drain.batch = deque(self.store.pending_intents(drain.name, size, drain.after_id))
            if not drain.batch:
                return None
        intent = drain.batch.popleft()
        drain.after_id = intent.id
        drain.seen += 1
        self.progress(
            f"outbox.send: {drain.name} pending intents gone through",
            drain.seen,
            max(drain.total, drain.seen),
        )
        return intent

    def _may_go(self, drain: _Drain, intent: Intent) -> bool:
        """Whether to try the intent now: not while its key waits (an earlier intent of it
        is not done), before it is due, or while the destination defers it."""
        name, blocked = drain.name, drain.blocked
        if intent.order_key in blocked:
            return False
        if parse_iso(intent.next_attempt_at) > self.now():
            blocked.add(intent.order_key)
            return False
        if self.stopping.is_set():
            raise ShutdownRequested("outbox: stopping between intents")
        waits_for = drain.defer(self.store, intent) if drain.defer is not None else None
        if waits_for:
            blocked.add(intent.order_key)
            self.counts["deferred"] += 1
            drain.deferred.append((intent, waits_for))
            log.info(
                "outbox_deferred",
                destination=name,
                intent_id=intent.id,
                kind=intent.kind,
                key=intent.order_key,
                waits_for=waits_for,
            )
            return False
        return True

    def _deliver_all(self, drain: _Drain, chosen: list[Intent]) -> None:
        """Try the chosen intents in order; an intent whose key an earlier failure of this
        turn blocked, or every one after the destination stopped, is left as it was.

        The host destination writes files whose replay the host may see twice: its
        outcomes are recorded one by one, right after each write, as before."""
        name = drain.name
        batched = name != "host"
        marked = [i.id for i in chosen if batched and not i.unclear]
        if marked:
            with self.store.transaction():
                self.store.mark_attempts_started(marked)
        records: list[Record] = []
        tried: set[int] = set()
        try:
            for intent in chosen:
                if intent.order_key in drain.blocked or not drain.active:
                    continue
                if self.stopping.is_set():
                    raise ShutdownRequested("outbox: stopping between intents")
                tried.add(intent.id)
                rejected_before = self.counts["rejected"]
                stopped_before = self._stops()
                finished = self._deliver(name, drain.destination, intent, records)
                if not batched:
                    self._record(records, [])
                if not finished or (
                    drain.stop_on_reject and self.counts["rejected"] > rejected_before
                ):
                    drain.blocked.add(intent.order_key)
                if self._stops() != stopped_before:
                    drain.active = False  # the destination is down: try again next drain
        finally:
            self._record(records, [i for i in marked if i not in tried])

    def _record(self, records: list[Record], untried: list[int]) -> None:
        """The outcomes owed to the state DB, in one transaction; intents marked attempted
        but never tried get their mark back off."""
        if not records and not untried:
            return
        with self.store.transaction():
            for record in records:
                record()
            if untried:
                self.store.clear_attempt_marks(untried)
        records.clear()

    def _settle_deferred(self, name: str, defer: Any, deferred: list[tuple[Intent, str]]) -> None:
        """After a drain, a deferred intent whose wait is not over is due again when the
        next other intent of its destination is (what it waits for is among them), at
        the latest after `max_backoff`: a wait of hours then costs no drain, `runs` row
        or log line per sender interval. One whose wait ended in this drain stays due."""
        if not deferred:
            return
        keys = {intent.order_key for intent, _ in deferred}
        now = self.now()
        latest = iso(now + timedelta(seconds=self.settings.outbox.max_backoff))
        others = [
            r[1]
            for r in self.store.db.execute(
                "SELECT order_key, next_attempt_at FROM outbox WHERE destination = ? "
                "AND status = 'pending'",
                [name],
            )
            if r[0] not in keys
        ]
        until = max(iso(now), min([*others, latest]))
        for intent, _ in deferred:
            waits_for = defer(self.store, intent)
            if waits_for:
                self.store.defer_intent(intent.id, waits_for, until)

    def _stops(self) -> tuple[int, int]:
        """Failures that stop a destination's drain (counted over every destination)."""
        return self.counts["auth_failed"], self.counts["outage"]

    def _deliver(
        self, name: str, destination: Destination, intent: Intent, records: list[Record]
    ) -> bool:
        """Try one intent; True when it is finished (sent or rejected). What its outcome
        writes goes to `records`, for the caller to commit."""
        bound = log.bind(
            destination=name, intent_id=intent.id, kind=intent.kind, key=intent.order_key
        )
        expand = getattr(destination, "expand", None)
        try:
            # An intent that names its rows in the state DB is sent with them; the outcome
            # is recorded against the intent as stored.
            sending = intent if expand is None else expand(self.store, intent)
            with collect_request_ids() as request_ids:
                result = destination.send(sending)
        except AlreadyDoneError as exc:
            detail = {"already_done": exc.message}

            def already_done() -> None:
                _record_outcome(self.store, destination, intent, "already_done", detail)
                self.store.mark_sent(intent.id, detail)

            records.append(already_done)
            self.counts["already_done"] += 1
            metrics.intent_outcome(name, "already_done")
            bound.info("outbox_already_done", remote=exc.message, request_id=exc.request_id)
            return True
        except ConnectorStoppedError as exc:
            stopped = exc

            def auth_failed() -> None:
                self.store.open_alert(stopped.alert_kind, stopped.alert_message(name), name)

            records.append(auth_failed)
            self.counts["auth_failed"] += 1
            bound.error("outbox_auth_failed", error=str(exc), alert=exc.alert_kind)
            return False
        except PermanentError as exc:
            refused = exc

            def rejected() -> None:
                _record_outcome(self.store, destination, intent, "rejected", str(refused))
                reject_id = self.store.reject_intent(
                    intent,
                    str(refused),
                    run_id=self.run_id,
                    payload=refused.reject_payload if isinstance(refused, DivergedError) else None,
                )
                bound.warning("outbox_rejected", reason=str(refused), reject_id=reject_id)

            records.append(rejected)
            self.counts["rejected"] += 1
            metrics.intent_outcome(name, "rejected")
            return True
        except Exception as exc:
            return self._retry_or_give_up(name, destination, intent, exc, bound, records)
        ids = list(request_ids)

        def sent() -> None:
            _record_outcome(self.store, destination, intent, "sent", result)
            self.store.mark_sent(intent.id, result, request_ids=ids)
            if self.store.resolve_alerts(OUTAGE_ALERT, subject=name):
                bound.info("outbox_outage_over")

        records.append(sent)
        self.counts["pushed"] += 1
        metrics.intent_outcome(name, "sent")
        if isinstance(result, dict) and result.get("warnings"):
            self.warnings.append(
                {"destination": name, "intent_id": intent.id, "warnings": result["warnings"]}
            )
        bound.debug("outbox_sent")
        return True

    def _outage(
        self,
        name: str,
        intent: Intent,
        exc: Exception,
        decision: Decision,
        bound: Logger,
        records: list[Record],
    ) -> bool:
        """Keep the intent pending (it and every later intent of the destination wait)
        and keep one alert open for the destination."""
        message = (
            f"{name}: cannot deliver ({exc}); intent {intent.id} ({intent.kind} "
            f"{intent.order_key}) and everything after it wait, retried every "
            f"{self.settings.outbox.max_backoff:g}s at most, never given up"
        )

        def outage() -> None:
            self.store.mark_retry(intent.id, str(exc), decision.delay, unclear=False)
            self.store.open_alert(OUTAGE_ALERT, message, subject=name)

        records.append(outage)
        self.counts["outage"] += 1
        self.counts["retried"] += 1
        metrics.intent_outcome(name, "retried")
        bound.error(
            "outbox_outage",
            error=str(exc),
            delay_s=round(decision.delay, 2),
            attempts=intent.attempts + 1,
        )
        return False

    def _retry_or_give_up(
        self,
        name: str,
        destination: Destination,
        intent: Intent,
        exc: Exception,
        bound: Logger,
        records: list[Record],
    ) -> bool:
        if not isinstance(exc, RetryableError):
            bound.exception("outbox_send_crashed")
        decision = decide_after_failure(intent, exc, self.settings.outbox, self.now())
        if isinstance(exc, DestinationOutage):
            return self._outage(name, intent, exc, decision, bound, records)
        if decision.action == "retry":
            # Once unclear, an intent stays so until it is done: a clear failure of a later
            # attempt (its read-back refused, say) says nothing of what the earlier one did.
            unclear = name != "host" and (intent.unclear or ended_unclear(exc))
            error = str(exc)
            records.append(
                lambda: self.store.mark_retry(intent.id, error, decision.delay, unclear=unclear)
            )
            self.counts["retried"] += 1
            metrics.intent_outcome(name, "retried")
            bound.warning(
                "outbox_retry_later",
                error=error,
                delay_s=round(decision.delay, 2),
                attempts=intent.attempts + 1,
            )
            return False

        def gave_up() -> None:
            _record_outcome(self.store, destination, intent, "rejected", decision.reason)
            reject_id = self.store.reject_intent(intent, decision.reason, run_id=self.run_id)
            self.store.open_alert(
                "outbox_gave_up",
                f"{name}: intent {intent.id} ({intent.kind} {intent.order_key}) "
                f"{decision.reason}; see `syncd rejects show {reject_id}`",
                subject=name,
            )
            bound.error("outbox_gave_up", reason=decision.reason, reject_id=reject_id)

        records.append(gave_up)
        self.counts["rejected"] += 1
        self.counts["gave_up"] += 1
        metrics.intent_outcome(name, "given_up")
        return True
