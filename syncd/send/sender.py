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
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
        for name in self.store.destinations_with_due_intents():
            self.drain_destination(name)
        return self.counts

    def drain_destination(self, name: str) -> None:
        factory = self.destinations.get(name)
        if factory is None:
            self.store.open_alert(
                "outbox_destination",
                f"intents wait for destination {name!r}, which no enabled connector provides",
                subject=name,
            )
            log.error("outbox_no_destination", destination=name)
            return
        destination = factory(self.settings)
        try:
            self._drain(name, destination)
        finally:
            readbacks = getattr(destination, "readbacks", None)
            if isinstance(readbacks, ReadBacks):
                self.counts.update(readbacks.take())
            destination.close()

    def _drain(self, name: str, destination: Destination) -> None:
        blocked: set[str] = set()  # keys whose earlier intent is not done yet
        stop_on_reject = getattr(destination, "stop_key_on_reject", False)
        defer = getattr(destination, "defer", None)
        if stop_on_reject:
            # e.g. DSOrder: no close after a refused fulfilment, until an operator
            # retries that reject (it is sent again) or drops it (the rest goes on).
            blocked.update(
                r[0]
                for r in self.store.db.execute(
                    "SELECT DISTINCT order_key FROM outbox WHERE destination = ? "
                    "AND status = 'rejected'",
                    [name],
                )
            )
        deferred: list[tuple[Intent, str]] = []
        try:
            self._drain_intents(name, destination, blocked, deferred)
        finally:
            self._settle_deferred(name, defer, deferred)

    def _drain_intents(
        self,
        name: str,
        destination: Destination,
        blocked: set[str],
        deferred: list[tuple[Intent, str]],
    ) -> None:
        policy = self.settings.outbox
        stop_on_reject = getattr(destination, "stop_key_on_reject", False)
        defer = getattr(destination, "defer", None)
        after_id = 0
        stopped_before = self._stops()
        stage, seen = f"outbox.send: {name} pending intents gone through", 0
        total = (
            queries.pending_intent_count(self.store, name)
            if self.progress is not no_progress
            else 0
        )
        while True:
            batch = self.store.pending_intents(name, policy.batch_size, after_id)
            if not batch:
                return
            for intent in batch:
                after_id = intent.id
                seen += 1
                self.progress(stage, seen, max(total, seen))
                if intent.order_key in blocked:
                    continue
                if parse_iso(intent.next_attempt_at) > self.now():
                    blocked.add(intent.order_key)
                    continue
                if self.stopping.is_set():
                    raise ShutdownRequested("outbox: stopping between intents")
                waits_for = defer(self.store, intent) if defer is not None else None
                if waits_for:
                    blocked.add(intent.order_key)
                    self.counts["deferred"] += 1
                    deferred.append((intent, waits_for))
                    log.info(
                        "outbox_deferred",
                        destination=name,
                        intent_id=intent.id,
                        kind=intent.kind,
                        key=intent.order_key,
                        waits_for=waits_for,
                    )
                    continue
                rejected_before = self.counts["rejected"]
                finished = self._deliver(name, destination, intent)
                if not finished or (stop_on_reject and self.counts["rejected"] > rejected_before):
                    blocked.add(intent.order_key)
                if self._stops() != stopped_before:
                    return  # the destination as a whole is down: try again next drain

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

    def _deliver(self, name: str, destination: Destination, intent: Intent) -> bool:
        """Try one intent; True when it is finished (sent or rejected)."""
        bound = log.bind(
            destination=name, intent_id=intent.id, kind=intent.kind, key=intent.order_key
        )
        if not intent.unclear and name != "host":
            self.store.mark_attempt_started(intent.id)
        try:
            with collect_request_ids() as request_ids:
                result = destination.send(intent)
        except AlreadyDoneError as exc:
            with self.store.transaction():
                detail = {"already_done": exc.message}
                _record_outcome(self.store, destination, intent, "already_done", detail)
                self.store.mark_sent(intent.id, detail)
            self.counts["already_done"] += 1
            metrics.intent_outcome(name, "already_done")
            bound.info("outbox_already_done", remote=exc.message, request_id=exc.request_id)
            return True
        except ConnectorStoppedError as exc:
            self.store.open_alert(exc.alert_kind, exc.alert_message(name), subject=name)
            self.counts["auth_failed"] += 1
            bound.error("outbox_auth_failed", error=str(exc), alert=exc.alert_kind)
            return False
        except PermanentError as exc:
            with self.store.transaction():
                _record_outcome(self.store, destination, intent, "rejected", str(exc))
                reject_id = self.store.reject_intent(
                    intent,
                    str(exc),
                    run_id=self.run_id,
                    payload=exc.reject_payload if isinstance(exc, DivergedError) else None,
                )
            self.counts["rejected"] += 1
            metrics.intent_outcome(name, "rejected")
            bound.warning("outbox_rejected", reason=str(exc), reject_id=reject_id)
            return True
        except Exception as exc:
            return self._retry_or_give_up(name, destination, intent, exc, bound)
        with self.store.transaction():
            _record_outcome(self.store, destination, intent, "sent", result)
            self.store.mark_sent(intent.id, result, request_ids=request_ids)
            if self.store.resolve_alerts(OUTAGE_ALERT, subject=name):
                bound.info("outbox_outage_over")
        self.counts["pushed"] += 1
        metrics.intent_outcome(name, "sent")
        if isinstance(result, dict) and result.get("warnings"):
            self.warnings.append(
                {"destination": name, "intent_id": intent.id, "warnings": result["warnings"]}
            )
        bound.debug("outbox_sent")
        return True

    def _outage(
        self, name: str, intent: Intent, exc: Exception, decision: Decision, bound: Logger
    ) -> bool:
        """Keep the intent pending (it and every later intent of the destination wait)
        and keep one alert open for the destination."""
        with self.store.transaction():
            self.store.mark_retry(intent.id, str(exc), decision.delay, unclear=False)
            self.store.open_alert(
                OUTAGE_ALERT,
                f"{name}: cannot deliver ({exc}); intent {intent.id} ({intent.kind} "
                f"{intent.order_key}) and everything after it wait, retried every "
                f"{self.settings.outbox.max_backoff:g}s at most, never given up",
                subject=name,
            )
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
        self, name: str, destination: Destination, intent: Intent, exc: Exception, bound: Logger
    ) -> bool:
        if not isinstance(exc, RetryableError):
            bound.exception("outbox_send_crashed")
        decision = decide_after_failure(intent, exc, self.settings.outbox, self.now())
        if isinstance(exc, DestinationOutage):
            return self._outage(name, intent, exc, decision, bound)
        if decision.action == "retry":
            # Once unclear, an intent stays so until it is done: a clear failure of a later
            # attempt (its read-back refused, say) says nothing of what the earlier one did.
            unclear = name != "host" and (intent.unclear or ended_unclear(exc))
            self.store.mark_retry(intent.id, str(exc), decision.delay, unclear=unclear)
            self.counts["retried"] += 1
            metrics.intent_outcome(name, "retried")
            bound.warning(
                "outbox_retry_later",
                error=str(exc),
                delay_s=round(decision.delay, 2),
                attempts=intent.attempts + 1,
            )
            return False
        with self.store.transaction():
            _record_outcome(self.store, destination, intent, "rejected", decision.reason)
            reject_id = self.store.reject_intent(intent, decision.reason, run_id=self.run_id)
        self.store.open_alert(
            "outbox_gave_up",
            f"{name}: intent {intent.id} ({intent.kind} {intent.order_key}) {decision.reason}; "
            f"see `syncd rejects show {reject_id}`",
            subject=name,
        )
        self.counts["rejected"] += 1
        self.counts["gave_up"] += 1
        metrics.intent_outcome(name, "given_up")
        bound.error("outbox_gave_up", reason=decision.reason, reject_id=reject_id)
        return True
