"""What every connector's client does against its simulator, whatever the remote system.

`ClientContract` holds the cases that hold for all five clients (Instock, DSOrder, the
import-jobs API, Netstock, Oregon SIOP); each system's contract suite subclasses it, as
vdirsyncer's `StorageTests` is subclassed per storage, and gives it:

- a `sim` fixture (the module's own simulator, on loopback, answering 429 with a Retry-After
  of 0 unless a case sets another);
- a `connect` fixture: `connect(refused=False)` returns a client context pointed at `sim`,
  with a wrong credential when `refused`, retrying up to `ATTEMPTS` times with a backoff
  ceiling under `LONG_RETRY_AFTER`;
- `ROUTE` (the route `call` reaches last, as the simulator's fault scripts name it) and
  `call(client)`, one ordinary call on it;
- `REFUSED_STATUS` / `REFUSED_REQUESTS` where a refused credential is not one 401.

The system-specific suites keep what only their system does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import pytest

from syncd.errors import AuthError, RetryableError

Connect = Callable[..., AbstractContextManager[Any]]

ATTEMPTS = 4
"""The clients' `retry.max_attempts` in these cases."""

LONG_RETRY_AFTER = 30
"""Seconds of a Retry-After beyond every client's backoff ceiling here."""


class ClientContract:
    """The cases every client meets against its simulator; subclass it (see the module)."""

    ROUTE: ClassVar[str]
    REFUSED_STATUS: ClassVar[int] = 401
    """The status a refused credential is answered with."""
    REFUSED_REQUESTS: ClassVar[int] = 1
    """Requests a call with a refused credential makes before AuthError."""

    def call(self, client: Any) -> object:
        """One ordinary call whose last request goes to `ROUTE`."""
        raise NotImplementedError

    def test_refused_credentials_are_an_auth_error_not_retried(
        self, sim: Any, connect: Connect
    ) -> None:
        """A wrong credential is AuthError carrying the remote's status and request id, and is
        not retried like a transient fault: retrying cannot make it right."""
        with connect(refused=True) as client, pytest.raises(AuthError) as caught:
            self.call(client)
        assert caught.value.status == self.REFUSED_STATUS
        assert caught.value.request_id == sim.requests[-1].request_id
        assert sim.count() == self.REFUSED_REQUESTS

    def test_server_errors_and_rate_limits_are_retried_until_answered(
        self, sim: Any, connect: Connect
    ) -> None:
        """500, 503 and 429 (Retry-After 0) on the call are each retried; the fourth attempt
        gets the answer."""
        with connect() as client:
            sim.faults.script(self.ROUTE, ["500", "503", "429"])
            self.call(client)
        assert sim.count(self.ROUTE) == 4
        assert sim.faults.remaining(self.ROUTE) == []

    def test_a_persistent_server_error_is_retryable_with_the_request_id(
        self, sim: Any, connect: Connect
    ) -> None:
        """A 503 on every attempt ends, after max_attempts requests, as RetryableError 503
        carrying the request id of the last answer."""
        with connect() as client:
            sim.faults.script(self.ROUTE, ["503"] * ATTEMPTS)
            with pytest.raises(RetryableError) as caught:
                self.call(client)
        assert caught.value.status == 503
        assert caught.value.request_id == sim.requests[-1].request_id
        assert sim.count(self.ROUTE) == ATTEMPTS

    def test_a_retry_after_beyond_the_backoff_ceiling_is_handed_back(
        self, sim: Any, connect: Connect
    ) -> None:
        """A 429 asking for a longer wait than the client would sleep is not slept on: it is
        RetryableError 429 with the wait, for the caller to schedule, after one request."""
        sim.faults.retry_after = LONG_RETRY_AFTER
        with connect() as client:
            sim.faults.script(self.ROUTE, ["429"])
            with pytest.raises(RetryableError) as caught:
                self.call(client)
        assert (caught.value.status, caught.value.retry_after) == (429, LONG_RETRY_AFTER)
        assert sim.count(self.ROUTE) == 1

    def test_an_answer_that_is_not_json_is_retried(self, sim: Any, connect: Connect) -> None:
        """A success status whose body is cut-off JSON is a transient fault: retried, and the
        next answer is used."""
        with connect() as client:
            sim.faults.script(self.ROUTE, ["malformed"])
            self.call(client)
        assert sim.count(self.ROUTE) == 2
        assert sim.faults.fired == {"malformed": 1}
