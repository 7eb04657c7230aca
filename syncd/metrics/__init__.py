"""syncd's Prometheus metrics: every metric is declared here or in `syncd.metrics.state`.

Two kinds, by who knows the truth:

- counted in this process (this module): runs and their durations, rows per job, outbox
  outcomes, HTTP requests, retry and rate-limit waits. Counters start at 0 when the
  process starts, as Prometheus counters do (`rate()` and `increase()` handle resets).
- read from the state DB at every scrape (`syncd.metrics.state.StateCollector`): last
  success per job, outbox depth and age, open rejects and alerts, checkpoint lag, the
  DSOrder order loop. These survive restarts and agree with `syncd status`.

The names follow Prometheus conventions: the `syncd_` prefix, `_total` for counters,
base units (`_seconds`), and labels with a bounded set of values (job, connector,
destination, status class; never an order or article id). The instruments are
module-level, as prometheus_client intends: the code that counts calls the small
functions below, never the metric objects, so a label is spelt in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY: Final = CollectorRegistry(auto_describe=True)
"""The in-process metrics; an exposure adds the state DB's collector beside it."""

# Job runs last from milliseconds (a quiet outbox drain) to an hour (a full export).
RUN_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# One HTTP exchange: a loopback answer in milliseconds up to the 120 s request deadline.
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

RUNS: Final = Counter(
    "syncd_runs_total",
    "Job runs finished, by job and status (ok, failed, interrupted, skipped).",
    ["job", "status"],
    registry=REGISTRY,
)
RUN_DURATION: Final = Histogram(
    "syncd_run_duration_seconds",
    "Wall-clock duration of job runs, by job.",
    ["job"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
ROWS_PULLED: Final = Counter(
    "syncd_rows_pulled_total",
    "Records a job read from its source (a remote's pages, host file rows), by job.",
    ["job"],
    registry=REGISTRY,
)
ROWS_STORED: Final = Counter(
    "syncd_rows_stored_total",
    "Records a job stored in its mirror tables, by job (jobs that count them separately).",
    ["job"],
    registry=REGISTRY,
)
ROWS_REJECTED: Final = Counter(
    "syncd_rows_rejected_total",
    "Records a job put in rejects with a reason, by job.",
    ["job"],
    registry=REGISTRY,
)
INTENTS_QUEUED: Final = Counter(
    "syncd_outbox_intents_queued_total",
    "Push intents recorded in the outbox (replays of a known intent not counted).",
    ["destination"],
    registry=REGISTRY,
)
INTENTS_SENT: Final = Counter(
    "syncd_outbox_intents_sent_total",
    "Intents delivered, by destination; how: sent, or already_done (the remote had it).",
    ["destination", "how"],
    registry=REGISTRY,
)
INTENTS_RETRIED: Final = Counter(
    "syncd_outbox_intents_retried_total",
    "Failed deliveries rescheduled with backoff, by destination.",
    ["destination"],
    registry=REGISTRY,
)
READBACKS: Final = Counter(
    "syncd_readback_total",
    "Read-backs before resending an intent whose last attempt ended unclear, by outcome.",
    ["destination", "outcome"],
    registry=REGISTRY,
)
INTENTS_REJECTED: Final = Counter(
    "syncd_outbox_intents_rejected_total",
    "Intents the remote refused for good (moved to rejects), by destination.",
    ["destination"],
    registry=REGISTRY,
)
INTENTS_GIVEN_UP: Final = Counter(
    "syncd_outbox_intents_given_up_total",
    "Intents moved to rejects after max_attempts or max_age ran out, by destination.",
    ["destination"],
    registry=REGISTRY,
)
HTTP_REQUESTS: Final = Counter(
    "syncd_http_requests_total",
    "HTTP requests sent, by connector, status class (2xx..5xx, or none when no answer "
    "came) and outcome.",
    ["connector", "status_class", "outcome"],
    registry=REGISTRY,
)
HTTP_DURATION: Final = Histogram(
    "syncd_http_request_duration_seconds",
    "Time from sending a request to the whole answer read (or the failure), by connector.",
    ["connector"],
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
HTTP_RETRIES: Final = Counter(
    "syncd_http_retries_total",
    "Requests repeated after a retryable failure (each wait before a repeat), by connector.",
    ["connector"],
    registry=REGISTRY,
)
HTTP_RETRY_WAIT: Final = Counter(
    "syncd_http_retry_wait_seconds_total",
    "Seconds spent waiting before repeats (backoff or the remote's Retry-After).",
    ["connector"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS: Final = Counter(
    "syncd_http_rate_limit_waits_total",
    "Requests held back by the connector's rate limit, by connector.",
    ["connector"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT: Final = Counter(
    "syncd_http_rate_limit_wait_seconds_total",
    "Seconds requests waited for the connector's rate limit.",
    ["connector"],
    registry=REGISTRY,
)

# Outcomes of one HTTP exchange; anything else is counted as "error".
HTTP_OUTCOMES: Final = frozenset(
    {
        "ok",
        "auth",
        "permanent",
        "retryable",
        "redirect",
        "timeout",
        "connection",
        "malformed",
        "too_large",
        "interrupted",
        "error",
    }
)


def status_class(status: int | None) -> str:
    """`2xx`..`5xx` for an HTTP status, `none` when no answer came."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


def observe_run(job: str, status: str, seconds: float | None, counts: Mapping[str, int]) -> None:
    """A finished (not dry) run: its status, duration (None for a run skipped before it
    started) and row counts."""
    RUNS.labels(job, status).inc()
    if seconds is not None:
        RUN_DURATION.labels(job).observe(max(0.0, seconds))
    for key, counter in (
        ("pulled", ROWS_PULLED),
        ("stored", ROWS_STORED),
        ("rejected", ROWS_REJECTED),
    ):
        value = counts.get(key, 0)
        if value > 0:
            counter.labels(job).inc(value)


def intents_queued(by_destination: Mapping[str, int]) -> None:
    for destination, n in by_destination.items():
        if n > 0:
            INTENTS_QUEUED.labels(destination).inc(n)


def readback(destination: str, outcome: str, n: int = 1) -> None:
    """Read-backs before resending (`n` of them, one per record read): applied, not_applied
    or diverged."""
    READBACKS.labels(destination, outcome).inc(n)


def intent_outcome(destination: str, outcome: str) -> None:
    """One delivery attempt's outcome as the sender decided it: sent, already_done,
    retried, rejected or given_up."""
    if outcome in ("sent", "already_done"):
        INTENTS_SENT.labels(destination, outcome).inc()
    elif outcome == "retried":
        INTENTS_RETRIED.labels(destination).inc()
    elif outcome == "rejected":
        INTENTS_REJECTED.labels(destination).inc()
    elif outcome == "given_up":
        INTENTS_GIVEN_UP.labels(destination).inc()


def http_request(connector: str, status: int | None, outcome: str, seconds: float) -> None:
    HTTP_REQUESTS.labels(
        connector, status_class(status), outcome if outcome in HTTP_OUTCOMES else "error"
    ).inc()
    HTTP_DURATION.labels(connector).observe(max(0.0, seconds))


def retry_wait(connector: str, seconds: float) -> None:
    HTTP_RETRIES.labels(connector).inc()
    HTTP_RETRY_WAIT.labels(connector).inc(max(0.0, seconds))


def rate_limit_wait(connector: str, seconds: float) -> None:
    if seconds > 0:
        RATE_LIMIT_WAITS.labels(connector).inc()
        RATE_LIMIT_WAIT.labels(connector).inc(seconds)
