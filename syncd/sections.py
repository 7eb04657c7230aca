"""The building blocks of config sections, imported by config.py and by every connector.

A leaf: it imports no other syncd module, so a connector module can define its own
`[connectors.<name>]` section model (a `ConnectorConfig`) and `syncd.config` can gather
those models into `Connectors` without an import cycle. `syncd.config` re-exports
every name here.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

SECRET_FIELDS = ("token", "api_key", "password", "client_secret")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as '90', '30s', '5m', '2h', '1d'."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '5m' or '2h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError("expected a duration such as 30, '30s', '5m' or '2h'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]

MIB = 1024 * 1024
# An answer size: a number of bytes or a string such as "64MiB", "500KB".
AnswerSize = Annotated[ByteSize, Field(ge=1024, le=4 * 1024 * MIB)]


class Section(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class Schedule(Section):
    """When a job or connector runs: every `interval`, or on a `cron` expression."""

    interval: Duration | None = None
    cron: str | None = None
    jitter: Duration = 0.0

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(f"not a valid crontab expression: {exc}") from None
        return value

    @field_validator("interval")
    @classmethod
    def _interval_positive(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1 second")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if self.interval is not None and self.cron is not None:
            raise ValueError("give either 'interval' or 'cron', not both")
        return self

    def describe(self) -> str:
        if self.cron:
            return f"cron '{self.cron}'"
        if self.interval:
            return f"every {self.interval:g}s"
        return "not scheduled"


class Timeouts(Section):
    connect: Duration = 5.0
    read: Duration = 30.0
    write: Duration = 30.0
    pool: Duration = 10.0


class RetryPolicy(Section):
    """Bounded exponential backoff with full jitter for retryable failures."""

    max_attempts: int = Field(5, ge=1, le=100)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    max_elapsed: Duration = 120.0


class RateLimit(Section):
    """The token bucket one connector's jobs and sender share (syncd/ratebudget.py): at
    most `burst` requests at once, `per_second` sustained; 0 requests per second means
    unlimited. Each connector sets its own default."""

    per_second: float = Field(0.0, ge=0)
    burst: int = Field(10, ge=1)


class NoOptions(BaseModel):
    """The options of a connector that reads none: any key there is a misspelling."""

    model_config = ConfigDict(extra="forbid")


class ConnectorConfig(Section):
    """Settings every remote system shares; connectors read their own extras from `options`."""

    client: ClassVar[type[object]]
    """The client this section configures; every connector's section sets it."""
    options_model: ClassVar[type[BaseModel]] = NoOptions
    """The model of `connectors.<name>.options` (check-config validates them against it);
    NoOptions for a connector that reads none, so every key there is refused."""

    enabled: bool = False
    base_url: str = ""
    allow_insecure_http: bool = False
    token: SecretStr | None = None
    token_file: Path | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    correlation_header: str = "X-Correlation-ID"
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    rate_limit: RateLimit = RateLimit()
    # Bounds on every request and scan (README "Requests that misbehave"): a whole request
    # (connect + send + whole body) ends by `request_deadline`; a body larger than
    # `max_response_bytes` is refused after that many bytes; a cursor walk stops after
    # `max_pages` pages (or earlier: twice the last complete scan of that list + 10).
    request_deadline: Duration = Field(120.0, gt=0, le=3600)
    max_response_bytes: AnswerSize = ByteSize(64 * MIB)
    max_pages: int = Field(10_000, ge=1, le=10_000_000)
    schedule: Schedule = Schedule()
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _rate_limit_defaults(cls, data: Any) -> Any:
        """A `rate_limit` table naming one key keeps this connector's default for the other
        (a burst alone must not turn a connector's default rate into "unlimited")."""
        if isinstance(data, dict) and isinstance(data.get("rate_limit"), dict):
            default = cls.model_fields["rate_limit"].default
            if isinstance(default, RateLimit):
                data = {**data, "rate_limit": {**default.model_dump(), **data["rate_limit"]}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """`token_file = "/path"` reads the secret from that file (it wins over an inline value)."""
        if not isinstance(data, dict):
            return data
        for name in SECRET_FIELDS:
            path = data.get(f"{name}_file")
            if path:
                try:
                    data = {**data, name: Path(path).read_text(encoding="utf-8").strip()}
                except OSError as exc:
                    raise ValueError(
                        f"{name}_file: cannot read {path}: {exc.strerror or exc}"
                    ) from None
        return data

    page_size_instead: ClassVar[str] = "the API takes no page size"
    """Why a connector without a `page_size` field refuses the key (and what to set instead)."""

    @model_validator(mode="before")
    @classmethod
    def _page_size_does_something(cls, data: Any) -> Any:
        """`page_size` is a field only where it changes requests (Instock, oregon_siop); elsewhere
        it was once accepted and ignored, so it is refused with the reason, not as an unknown key."""
        if isinstance(data, dict) and "page_size" in data and "page_size" not in cls.model_fields:
            raise ValueError(
                f"page_size: not used by this connector ({cls.page_size_instead}); remove it"
            )
        return data

    required_secrets: ClassVar[tuple[tuple[str, ...], ...]] = ()
    """Per entry, one of these secrets must be set (non-empty) when the connector is enabled."""
    required_fields: ClassVar[tuple[str, ...]] = ()

    @field_validator(*SECRET_FIELDS)
    @classmethod
    def _secret_is_usable(cls, value: SecretStr | None) -> SecretStr | None:
        """Surrounding whitespace (a newline from `echo > file`) is dropped, as for files;
        a control character left inside would make an illegal header: refused."""
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if _CONTROL.search(text):
            raise ValueError("contains a control character (a line break?); not usable")
        return SecretStr(text) if text else None

    @model_validator(mode="after")
    def _secrets_present(self) -> ConnectorConfig:
        """An enabled connector without its credential would fail every request:
        refused here, naming the key, rather than as `Illegal header value` at run time."""
        if not self.enabled:
            return self
        for name in self.required_fields:
            if not getattr(self, name):
                raise ValueError(f"{name}: required when the connector is enabled")
        for names in self.required_secrets:
            if not any(self.secret(n) for n in names):
                raise ValueError(
                    f"{names[0]}: required (and non-empty) when the connector is enabled; "
                    f"set {' or '.join(names)} inline, as {names[0]}_file, in the "
                    "environment (SYNCD_CONNECTORS__<NAME>__" + names[0].upper() + ") or as "
                    f"a systemd credential (<connector>.{names[0]})"
                )
        return self

    @model_validator(mode="after")
    def _url_is_safe(self) -> ConnectorConfig:
        if not self.enabled and not self.base_url:
            return self
        if self.enabled and not self.base_url:
            raise ValueError("base_url: required when the connector is enabled")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url: {self.base_url!r} is not an http(s) URL")
        insecure = parts.scheme == "http" and not is_loopback(parts.hostname)
        if insecure and not self.allow_insecure_http:
            raise ValueError(
                f"base_url: plain http to non-loopback host {parts.hostname!r} is refused; "
                "use https, or set allow_insecure_http = true for this connector"
            )
        return self

    def secret(self, name: str) -> str | None:
        value = getattr(self, name, None)
        return value.get_secret_value() if isinstance(value, SecretStr) else None


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (`127.x`, `[::1]`): plain http there leaves no host."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiKeyConnectorConfig(ConnectorConfig):
    """A connector authenticated by an `x-api-key` header rather than a bearer token."""

    auth_header: str = "x-api-key"
    auth_scheme: str = ""
