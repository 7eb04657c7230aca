"""What a Netstock answer or failure means: the envelope's message classified into syncd's errors.

**Envelope.** Every API answer is `{api_call_status, message, data}`. `api_call_status`
other than `true` is an error whatever the HTTP status (200 included), classified from the
message (`classify_failure`): auth words -> `AuthError`; "already open / exists /
started" -> `ConflictError(code="already_open")` (one open dataset per user, one open model
per type: the job resumes what is open); "already ended / being processed" ->
`AlreadyDoneError(code="already_done")` (a replay after a crash); a line count that "does
not match" -> `PermanentError(code="line_count_mismatch")`; "not found", "not been
started", "invalid payload", ... -> `PermanentError` with a code; "temporary / retry" ->
`RetryableError(code="temporary")`; "no ... available" -> `PermanentError(code="empty")`
(a pop turns it into None: an empty queue); anything else is permanent for a 4xx and
retryable for a 2xx. A body that is not JSON never crashes: it is retryable on a 2xx (a
cut-off answer), permanent on a 4xx (a proxy page).
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar

from syncd.connectors.netstock.settings import NAME
from syncd.errors import (
    AlreadyDoneError,
    AuthError,
    PermanentError,
    RemoteError,
    RetryableError,
)
from syncd.logs import redactor

_UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_SAFE_FAILURES: Final = frozenset({"token_unavailable"})
_CONNECT_FAILURES: Final = ("ConnectError", "ConnectTimeout", "PoolTimeout")
E = TypeVar("E", bound=RemoteError)


class ConflictError(PermanentError):
    """Something of the kind is already open (a dataset for this user, a model of this type).

    Not "done": the job decides, e.g. resumes the dataset it journaled. `dataset_import_id`
    is the open dataset when the answer names one.
    """

    @property
    def dataset_import_id(self) -> str | None:
        details = self.details if isinstance(self.details, dict) else {}
        return details.get("dataset_import_id")


class OutcomeUnknownError(RetryableError):
    """A non-idempotent call failed in a way that does not say whether it was applied."""


_FAILURE_RULES: Final[tuple[tuple[re.Pattern[str], type[RemoteError], str], ...]] = (
    (
        re.compile(
            r"already (?:been )?(?:ended|closed|completed?|processed|being processed|processing|marked)"
        ),
        AlreadyDoneError,
        "already_done",
    ),
    (
        re.compile(r"already (?:open|opened|exists?|started|in progress|active|running)"),
        ConflictError,
        "already_open",
    ),
    (re.compile(r"does not match|mismatch"), PermanentError, "line_count_mismatch"),
    (re.compile(r"not all models|models? (?:are |is )?still open"), PermanentError, "models_open"),
    (
        re.compile(r"not been started|not open|no longer accepting|marked to end|no more data"),
        PermanentError,
        "not_open",
    ),
    (
        re.compile(r"^no\b.*\b(?:available|found|left)\b|\bqueue is empty|nothing to pop"),
        PermanentError,
        "empty",
    ),
    (re.compile(r"not found|does not exist"), PermanentError, "not_found"),
    (
        re.compile(r"authori[sz]|unauthori|permission|forbidden|\btoken\b|credential"),
        AuthError,
        "auth",
    ),
    (
        re.compile(r"temporar|try again|retry|timed? ?out|unavailable|busy|rate limit"),
        RetryableError,
        "temporary",
    ),
    (
        re.compile(r"invalid|payload|validation|required|must |unknown model"),
        PermanentError,
        "invalid_payload",
    ),
    (re.compile(r"\bfailed\b"), PermanentError, "dataset_failed"),
)


def classify_failure(
    message: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
    data: Any = None,
) -> RemoteError:
    """The error for an `api_call_status: false` answer, from its message (then its status)."""
    text = (message or "").lower()
    cls: type[RemoteError] = PermanentError if (status or 200) >= 400 else RetryableError
    code = "netstock_error"
    for pattern, rule_cls, rule_code in _FAILURE_RULES:
        if pattern.search(text):
            cls, code = rule_cls, rule_code
            break
    details: dict[str, Any] = {"api_call_status": False}  # the server said no: not applied
    if isinstance(data, dict) and data:
        details["data"] = data
    if code == "already_open":
        found = (data or {}).get("dataset_import_id") if isinstance(data, dict) else None
        match = _UUID_RE.search(message or "")
        if found or match:
            details["dataset_import_id"] = str(found or match.group(0))  # type: ignore[union-attr]
    return cls(
        redactor.text(message or "api_call_status false without a message"),
        connector=NAME,
        status=status,
        code=code,
        request_id=request_id,
        details=details,
    )


def recast(exc: RemoteError, cls: type[E], message: str, code: str) -> E:
    """The same remote answer as another class of error, with its own code."""
    error = exc.recast(cls, message)
    error.code = code
    return error


def nothing_happened(exc: RetryableError) -> bool:
    """True when the failure proves the server did not act on the request."""
    if exc.status in (429, 503) or exc.code in _SAFE_FAILURES:
        return True
    if isinstance(exc.details, dict) and exc.details.get("api_call_status") is False:
        return True  # a well-formed refusal: the server answered, and said it did nothing
    return exc.code in ("connection", "timeout") and any(
        name in exc.message for name in _CONNECT_FAILURES
    )
