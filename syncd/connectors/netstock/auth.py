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

**Across runs.** Each job run builds its own client, so the token lives in a `TokenCache`
(the process-wide `TOKENS` by default), in memory only: never in the state DB, a file or a
log. Its `TokenKey` is the base URL, the token URL, `client_id`, `username`, `scope` and a
keyed digest of the password and client secret, so a reload that changes any of them fetches
a new token and drops the old identity's one. A grant is judged only by the clock that
stamped it (a cache entry read with another clock is a miss).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from syncd.connectors.netstock.errors import recast
from syncd.connectors.netstock.settings import DEFAULT_RENEW_MARGIN
from syncd.errors import AuthError, RetryableError
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


# A per-process key for the secret digest: the digest is no offline-guessable hash of a password.
_DIGEST_KEY: bytes = os.urandom(32)
# At most this many identities' tokens are kept (a reload leaves the old one until replaced).
MAX_CACHED_TOKENS = 16


def secret_digest(*secrets: str) -> str:
    """A keyed digest standing for the secrets in a `TokenKey` (the secrets are not kept)."""
    digest = hashlib.blake2b(key=_DIGEST_KEY, digest_size=16)
    for secret in secrets:
        digest.update(secret.encode("utf-8") + b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True)
class TokenKey:
    """Whose token a grant is: a change of any field means another token."""

    base_url: str
    token_url: str
    client_id: str
    username: str
    scope: str | None
    secrets: str = field(repr=False)  # `secret_digest(password, client_secret)`

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.base_url, self.token_url, self.client_id, self.username)


class TokenCache:
    """Grants by `TokenKey`, in memory only, shared by the clients of one process.

    Each entry remembers the clock that stamped its grant: a reader with another clock
    misses (its readings would misjudge the expiry). `lock` serialises fetches, so clients
    running at once in several threads fetch one token, not one each.
    """

    def __init__(self, limit: int = MAX_CACHED_TOKENS) -> None:
        self.lock = threading.RLock()
        self._limit = limit
        self._entries: dict[TokenKey, tuple[TokenGrant, Callable[[], float]]] = {}

    def __repr__(self) -> str:
        return f"TokenCache(entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: TokenKey, clock: Callable[[], float]) -> TokenGrant | None:
        with self.lock:
            entry = self._entries.get(key)
        if entry is None or entry[1] is not clock:
            return None
        return entry[0]

    def put(self, key: TokenKey, grant: TokenGrant, clock: Callable[[], float]) -> None:
        """Keep `grant` for `key`; another token of the same identity (old secret) is dropped."""
        with self.lock:
            for other in [k for k in self._entries if k.identity == key.identity and k != key]:
                del self._entries[other]
            self._entries.pop(key, None)
            self._entries[key] = (grant, clock)
            while len(self._entries) > self._limit:
                del self._entries[next(iter(self._entries))]  # the least recently stored

    def drop(self, key: TokenKey, grant: TokenGrant | None = None) -> None:
        """Forget `key`'s token (only if it is still `grant`, when given)."""
        with self.lock:
            entry = self._entries.get(key)
            if entry is not None and (grant is None or entry[0] is grant):
                del self._entries[key]

    def clear(self) -> None:
        with self.lock:
            self._entries.clear()


TOKENS = TokenCache()
"""The process-wide cache the daemon's clients share across runs."""


class NetstockAuth:
    """The `Auth` of the HTTP layer: a cached OAuth2 token, renewed before it runs out.

    `fetch(retry)` obtains a new `TokenGrant`. `headers()` uses the cached grant of `key`
    unless there is none or it is within the margin of its expiry, and then fetches (one
    attempt: the request's own retry loop covers it); `refresh()` (called by the HTTP layer
    once after a 401) fetches with retries, unless another client already replaced the
    refused token. Without a `cache` the token is this object's alone.
    """

    def __init__(
        self,
        fetch: Callable[[bool], TokenGrant],
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = DEFAULT_RENEW_MARGIN,
        header: str = "Authorization",
        scheme: str = "Bearer",
        key: TokenKey | None = None,
        cache: TokenCache | None = None,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self.margin = margin
        self.header = header
        self.scheme = scheme
        self._key = key or TokenKey("", "", "", "", None, secret_digest(str(id(self))))
        self._cache = cache if cache is not None else TokenCache(limit=1)
        self._grant: TokenGrant | None = None  # the grant this object last sent
        self.fetches = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"NetstockAuth(has_token={self._grant is not None}, fetches={self.fetches})"

    @property
    def grant(self) -> TokenGrant | None:
        return self._grant

    def _valid(self, grant: TokenGrant | None) -> bool:
        if grant is None:
            return False
        renew_at = grant.renew_at(self.margin)
        return renew_at is None or self._clock() < renew_at

    def _obtain(self, *, retry: bool) -> TokenGrant:
        grant = self._fetch(retry)
        redactor.add_secret(grant.access_token)  # an echo of it is redacted like a configured one
        self._cache.put(self._key, grant, self._clock)
        self._grant = grant
        self.fetches += 1
        log.info("netstock_token_obtained", expires_in=grant.expires_in, fetches=self.fetches)
        return grant

    def headers(self) -> Mapping[str, str]:
        with self._cache.lock:
            grant = self._cache.get(self._key, self._clock)
            if not self._valid(grant):
                try:
                    grant = self._obtain(retry=False)
                except AuthError as exc:
                    exc.refreshable = False  # fetching again would resend a refused password
                    raise
                except RetryableError as exc:
                    # Nothing was sent yet: the caller may retry even a non-idempotent call.
                    raise recast(
                        exc, RetryableError, f"no access token: {exc.message}", "token_unavailable"
                    ) from None
            assert grant is not None
            self._grant = grant
        value = f"{self.scheme} {grant.access_token}" if self.scheme else grant.access_token
        return {self.header: value}

    def refresh(self) -> bool:
        with self._cache.lock:
            self.refreshes += 1
            current = self._cache.get(self._key, self._clock)
            if current is not None and current is not self._grant and self._valid(current):
                self._grant = current  # another client replaced the refused token already
                return True
            self._cache.drop(self._key)
            self._obtain(retry=True)
            return True

    def invalidate(self) -> None:
        """Forget the token; the next request fetches a new one."""
        with self._cache.lock:
            self._cache.drop(self._key)
            self._grant = None
