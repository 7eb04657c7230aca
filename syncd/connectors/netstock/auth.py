"""Netstock's OAuth2 token: fetched, cached, renewed before it runs out.

**Auth.** `POST /application/o/token/` (an identity server path; `options.token_url` may
move it, even to another https host), form-encoded with exactly the document's fields:
`client_id`, `username`, `password`, `grant_type=client_credentials` and `scope`
(`options.scope`; left out when not configured). `client_secret` is added only when one is
configured: the document does not list it, a confidential identity-server client needs it.
`NetstockAuth` caches the access token, renews it `token_renew_margin` seconds (default
60, at most half the lifetime) before `expires_in` runs out, and fetches a new one when the
HTTP layer calls `refresh()` after a 401 (once; a second refusal is an `AuthError`). A token
request the identity server refuses (400/401/403, `{"error": ...}`) is an `AuthError`.
Passwords, secrets and tokens are never logged, and never appear in a `repr`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from syncd.connectors.netstock.errors import recast
from syncd.connectors.netstock.settings import DEFAULT_RENEW_MARGIN
from syncd.errors import RetryableError
from syncd.logs import redactor

log = structlog.get_logger("syncd.connectors.netstock")


@dataclass(frozen=True)
class TokenGrant:
    """An access token and when this client obtained it (by its own clock)."""

    access_token: str
    token_type: str
    expires_in: float | None
    obtained_at: float
    scope: str | None = None

    def __repr__(self) -> str:  # the token never appears in a repr or a log line
        return f"TokenGrant(token_type={self.token_type!r}, expires_in={self.expires_in!r})"

    def renew_at(self, margin: float) -> float | None:
        """The clock reading from which the token is renewed before use (None: only on 401)."""
        if self.expires_in is None:
            return None
        return self.obtained_at + self.expires_in - min(margin, self.expires_in / 2)


class NetstockAuth:
    """The `Auth` of the HTTP layer: a cached OAuth2 token, renewed before it runs out.

    `fetch(retry)` obtains a new `TokenGrant`. `headers()` fetches when there is no token or
    it is within the margin of its expiry (one attempt: the request's own retry loop covers
    it); `refresh()` (called by the HTTP layer once after a 401) always fetches, with retries.
    """

    def __init__(
        self,
        fetch: Callable[[bool], TokenGrant],
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = DEFAULT_RENEW_MARGIN,
        header: str = "Authorization",
        scheme: str = "Bearer",
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self.margin = margin
        self.header = header
        self.scheme = scheme
        self._grant: TokenGrant | None = None
        self._lock = threading.Lock()
        self.fetches = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"NetstockAuth(has_token={self._grant is not None}, fetches={self.fetches})"

    @property
    def grant(self) -> TokenGrant | None:
        return self._grant

    def _valid(self) -> bool:
        if self._grant is None:
            return False
        renew_at = self._grant.renew_at(self.margin)
        return renew_at is None or self._clock() < renew_at

    def _obtain(self, *, retry: bool) -> TokenGrant:
        grant = self._fetch(retry)
        redactor.add_secret(grant.access_token)  # an echo of it is redacted like a configured one
        self._grant = grant
        self.fetches += 1
        log.info("netstock_token_obtained", expires_in=grant.expires_in, fetches=self.fetches)
        return grant

    def headers(self) -> Mapping[str, str]:
        with self._lock:
            grant = self._grant if self._valid() else None
            if grant is None:
                try:
                    grant = self._obtain(retry=False)
                except RetryableError as exc:
                    # Nothing was sent yet: the caller may retry even a non-idempotent call.
                    raise recast(
                        exc, RetryableError, f"no access token: {exc.message}", "token_unavailable"
                    ) from None
        value = f"{self.scheme} {grant.access_token}" if self.scheme else grant.access_token
        return {self.header: value}

    def refresh(self) -> bool:
        with self._lock:
            self._grant = None
            self.refreshes += 1
            self._obtain(retry=True)
            return True

    def invalidate(self) -> None:
        """Forget the token; the next request fetches a new one."""
        with self._lock:
            self._grant = None
