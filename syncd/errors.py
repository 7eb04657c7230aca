"""One error tree for syncd.

Every failure a job can meet is classified once, where it is first seen, so the
code that reacts (retry, reject, stop the connector) never has to parse messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # syncd.state imports this module
    from syncd.state.kinds import AlertKind


class SyncdError(Exception):
    """Root of every error syncd raises on purpose."""

    exit_code = 1


class ConfigError(SyncdError):
    """The configuration is invalid; the message names the key and the reason."""

    exit_code = 78  # EX_CONFIG

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class StateError(SyncdError):
    """The state database cannot be used (newer schema, corrupt, locked)."""

    exit_code = 75  # EX_TEMPFAIL


class SchemaTooNewError(StateError):
    """The state file was written by a newer syncd; running on it could corrupt it."""


class AlreadyRunningError(StateError):
    """Another syncd holds the single-instance lock on this state directory."""


class UsageError(SyncdError):
    """The command line names something syncd does not have (an unknown job) or asks
    for what cannot be done as written."""

    exit_code = 64  # EX_USAGE


class BusyError(SyncdError):
    """What was asked is being done already (a backfill of the same stream requested or
    running): nothing was changed; 75, as asking again once it ends will work."""

    exit_code = 75  # EX_TEMPFAIL


class UnavailableError(SyncdError):
    """What a command needs is not installed (an optional extra such as Datasette)."""

    exit_code = 69  # EX_UNAVAILABLE


class NotFoundError(SyncdError):
    """A thing the operator named (a reject, an alert, a checkpoint, an order, the state
    DB) does not exist: 66, not 75, as trying again will not find it."""

    exit_code = 66  # EX_NOINPUT


class RefusedError(SyncdError):
    """An operator's command that the state does not allow (e.g. releasing an order
    that is not held): nothing was changed; exit 1, not 75, as retrying will not help."""


E = TypeVar("E", bound="RemoteError")


class RemoteError(SyncdError):
    """A remote system answered with an error, or could not be reached.

    Carries what an operator needs to chase it with the vendor: the remote's
    error code, its message, and its request id.
    """

    def __init__(
        self,
        message: str,
        *,
        connector: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.connector = connector
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.details = details

    def recast(self, cls: type[E], message: str) -> E:
        """The same remote answer (status, code, request id) as another class of error,
        e.g. a "cannot be created" that turns out to mean "already exists"."""
        return cls(
            message,
            connector=self.connector,
            status=self.status,
            code=self.code,
            request_id=self.request_id,
            retry_after=self.retry_after,
            details=self.details,
        )

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        prefix = f"{self.connector}: " if self.connector else ""
        return prefix + " ".join(parts)


class RetryableError(RemoteError):
    """Worth trying again later: timeouts, connection errors, 429, 5xx."""


class PermanentError(RemoteError):
    """The remote refused this item for good; it goes to rejects, not to a retry loop."""


class DivergedError(PermanentError):
    """A read-back after an unclear attempt found the remote record changed otherwise than
    intended: refused for good, and the reject keeps `reject_payload` (both versions and
    the fields that differ) instead of the intent's payload alone."""

    def __init__(self, message: str, *, reject_payload: Any, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reject_payload = reject_payload


class ConnectorStoppedError(RemoteError):
    """The connector cannot be used until its configuration is fixed and reloaded: its
    jobs are skipped and its intents wait under an open alert of kind `alert_kind`
    (one of CONNECTOR_STOP_ALERTS), which a reload (SIGHUP) clears."""

    alert_kind: AlertKind = "auth"

    def alert_message(self, name: str) -> str:
        return f"{name}: {self}; fix the configuration and reload"


class AuthError(ConnectorStoppedError):
    """Credentials were refused; refresh once, then stop the connector and alert.

    `refreshable` is False when the refusal came from fetching new credentials (a token
    endpoint refusing the password): a refresh would send the same password again."""

    refreshable: bool = True

    def alert_message(self, name: str) -> str:
        return f"{name}: credentials refused ({self}); fix them and reload"


# Alert kinds that stop a connector (jobs skipped, intents kept) until a reload:
# refused credentials, and a configured site that is not the one the remote shows.
CONNECTOR_STOP_ALERTS: tuple[AlertKind, ...] = ("auth", "site_environment", "site_unknown")


class AlreadyDoneError(RemoteError):
    """The remote says the effect already exists ("already exists", "already closed").

    Raised by connectors so that a replay after a crash is recognised as success.
    """


class ShutdownRequested(BaseException):
    """Raised at a checkpoint boundary when the daemon is stopping.

    A BaseException so that a job's `except Exception` cannot swallow it.
    """


class MalformedAnswerError(RetryableError):
    """A success status whose body is not the answer asked for: not JSON, cut off, JSON of
    the wrong shape (`[]`, `null`, a string where an object is expected), or too large.

    Retryable, because the same request often succeeds again (a cut-off body, a proxy's
    page during a deploy) and because, after a write, the outcome is unknown: the outbox
    retries it and the natural key recognises a replay. A read that stays malformed ends
    the run with `code` naming why; the next scheduled run tries again.
    """

    retry_now = True  # repeat within the request's attempt budget


class AnswerTooLargeError(MalformedAnswerError):
    """The body grew past the connector's `max_response_bytes`; reading stopped there.

    Not repeated at once: the same request would bring the same size again.
    """

    retry_now = False


class RedirectedError(RetryableError):
    """A 3xx: the remote points elsewhere (an http URL moved to https, a changed path).
    syncd follows no redirect, so a write was not done; it is retried later, not now:
    the same request is redirected again until `base_url` is corrected."""

    retry_now = False


class DeadlineExceededError(RetryableError):
    """The request (connect + send + whole body) outlived the connector's `request_deadline`:
    a stalled or trickling answer. Retryable like any timeout."""


class PaginationError(PermanentError):
    """A cursor walk that would never end: a cursor seen before in the same scan, or more
    pages than the scan's ceiling. The run fails and the alert `alert_kind` is opened for
    `subject` (`<connector>:<scan>`), resolved by the next complete scan of that list."""

    alert_kind: AlertKind = "pagination"

    @property
    def subject(self) -> str:
        scan = self.details.get("scan") if isinstance(self.details, dict) else None
        return f"{self.connector}:{scan}" if scan else self.connector
