"""Configuration: defaults < TOML file < SYNCD_* environment < secret files.

Everything an operator can set lives in these models, so `syncd check-config`
and `config/syncd.example.toml` describe the same thing. Secrets are
`SecretStr`: they print as `**********` and are read from files when given as
`<key>_file` or as systemd credentials (`$CREDENTIALS_DIRECTORY/<connector>.<key>`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from syncd.errors import ConfigError
from syncd.logs import redactor

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.toml")
DEFAULT_STATE_DIR = Path("/var/lib/syncd")
SECRET_FIELDS = ("token", "api_key", "password", "client_secret")
REDACTED = "**********"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Option keys whose values check-config never prints (`options.password`, `options.api_key`).
_SECRET_OPTION = re.compile(
    r"(?i)(^|[_-])(token|api[_-]?key|apikey|password|passwd|secret|signature|cookie)$"
)

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


class _Section(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class Schedule(_Section):
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


class Timeouts(_Section):
    connect: Duration = 5.0
    read: Duration = 30.0
    write: Duration = 30.0
    pool: Duration = 10.0


class RetryPolicy(_Section):
    """Bounded exponential backoff with full jitter for retryable failures."""

    max_attempts: int = Field(5, ge=1, le=100)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    max_elapsed: Duration = 120.0


class RateLimit(_Section):
    """Token bucket; 0 requests per second means unlimited."""

    per_second: float = Field(0.0, ge=0)
    burst: int = Field(10, ge=1)


class ConnectorConfig(_Section):
    """Settings every remote system shares; connectors read their own extras from `options`."""

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


class InstockConfig(ConnectorConfig):
    required_secrets = (("token",),)
    correlation_header: str = "Instock-Correlation-ID"
    page_size: int = Field(1000, ge=10, le=1000)  # the API's own bounds
    # A page holds at most 1000 records of well under 1 KiB each: 16 MiB is ten times that.
    max_response_bytes: AnswerSize = ByteSize(16 * MIB)
    site_id: str = ""  # the ASRS site; empty = the only site the token sees
    # What the site must be: a physical ASRS (production, `is_virtual: false`) or a sandbox
    # (`is_virtual: true`). Checked against /sites before the first site request; a mismatch
    # stops the connector (a `site_environment` alert) until the config is fixed and reloaded.
    environment: Literal["production", "sandbox"] = "production"

    @model_validator(mode="after")
    def _site_id_pattern(self) -> InstockConfig:
        if self.site_id and not re.fullmatch(r"[A-Za-z0-9_+.:-]{1,128}", self.site_id):
            raise ValueError(f"site_id: {self.site_id!r} is not a valid Instock site id")
        return self


class DSOrderConfig(ConnectorConfig):
    required_secrets = (("token",),)
    page_size_instead = "its lists are not paged"


class NetstockConfig(ConnectorConfig):
    required_secrets = (("password",),)
    required_fields = ("username", "client_id")
    page_size_instead = "its pops and datasets are not paged"


class ApiKeyConnectorConfig(ConnectorConfig):
    auth_header: str = "x-api-key"
    auth_scheme: str = ""


class ImportJobsConfig(ApiKeyConnectorConfig):
    required_secrets = (("api_key", "token"),)
    page_size_instead = 'rows per import job are jobs."planning.import".options.batch_size'


class OregonSiopConfig(ApiKeyConnectorConfig):
    required_secrets = (("api_key",),)
    page_size: int = Field(100, ge=1, le=10_000)  # items per request (a batch); no API limit


class Connectors(_Section):
    """One section per remote system; a disabled connector is never contacted."""

    instock: InstockConfig = InstockConfig()
    dsorder: DSOrderConfig = DSOrderConfig()
    netstock: NetstockConfig = NetstockConfig()
    import_jobs: ImportJobsConfig = ImportJobsConfig()
    oregon_siop: OregonSiopConfig = OregonSiopConfig()

    def items(self) -> list[tuple[str, ConnectorConfig]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]


class JobConfig(_Section):
    """Per-job switch, schedule and options; the job validates its own options."""

    enabled: bool = True
    schedule: Schedule = Schedule()
    options: dict[str, Any] = Field(default_factory=dict)


class DaemonConfig(_Section):
    state_dir: Path = Field(
        default_factory=lambda: Path(
            os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR
        )
    )
    shutdown_timeout: Duration = 30.0
    misfire_grace_time: Duration = 60.0
    site_timezone: str = "UTC"
    max_workers: int = Field(4, ge=1, le=64)

    @field_validator("site_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Amsterdam)"
            ) from None
        return value


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class OutboxConfig(_Section):
    """The sender that drains push intents (woken at once when a job queues some)."""

    schedule: Schedule = Schedule(interval=30)

    @field_validator("schedule")
    @classmethod
    def _interval_only(cls, value: Schedule) -> Schedule:
        if value.cron or not value.interval:
            raise ValueError("the sender runs on an interval: give schedule = {interval = ...}")
        return value

    batch_size: int = Field(100, ge=1, le=10_000)
    max_attempts: int = Field(20, ge=1)
    max_age: Duration = 86400.0
    initial_backoff: Duration = 5.0
    max_backoff: Duration = 900.0


class HealthConfig(_Section):
    """Thresholds of `syncd health` (README "Health for monitoring"); 0 turns a rule off."""

    # Whether a daemon should hold the state directory: its absence is then critical.
    expect_daemon: bool = True
    # Failed (or crashed) runs of one job in a row, not counting interrupted or skipped ones.
    failures_degraded: int = Field(3, ge=0)
    failures_critical: int = Field(10, ge=0)
    # A job's lag is the time since its last successful run. Its threshold: `lag` for that
    # job if given, else `lag_factor` times its schedule's interval, at least `lag_min`.
    lag_factor: float = Field(3.0, ge=1.0, le=1000.0)
    lag_min: Duration = 600.0
    lag: dict[str, Duration] = Field(default_factory=dict)
    # Critical once the lag is this many times its threshold.
    lag_critical_factor: float = Field(4.0, ge=0.0, le=1000.0)
    # Per checkpoint stream (opt-in): the time since its checkpoint was last written.
    stream_lag: dict[str, Duration] = Field(default_factory=dict)
    # The oldest pending intent of a destination.
    outbox_age_degraded: Duration = 3600.0
    outbox_age_critical: Duration = 21600.0
    # An open alert that stops a connector (auth, site_environment, site_unknown) is
    # critical; any other open alert counts as this.
    other_alerts: Literal["ok", "degraded", "critical"] = "degraded"

    @model_validator(mode="after")
    def _critical_after_degraded(self) -> HealthConfig:
        for low, high in (
            ("failures_degraded", "failures_critical"),
            ("outbox_age_degraded", "outbox_age_critical"),
        ):
            if (
                getattr(self, low)
                and getattr(self, high)
                and getattr(self, high) < getattr(self, low)
            ):
                raise ValueError(
                    f"{high}: must be at least {low} ({getattr(self, low):g}), or 0 (off)"
                )
        if self.lag_critical_factor and self.lag_critical_factor < 1:
            raise ValueError("lag_critical_factor: must be at least 1, or 0 (off)")
        return self

    @field_validator("lag", mode="before")
    @classmethod
    def _job_names(cls, value: Any) -> Any:
        """Environment names cannot hold dots: `SYNCD_HEALTH__LAG__DSORDER_PULL` is dsorder.pull."""
        return {_job_key(str(k)): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("lag", "stream_lag")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if seconds <= 0:
                raise ValueError(f"{name}: a lag threshold must be more than 0 seconds")
        return value


class HostConfig(_Section):
    """The host (WMS/ERP) file interface: inbox/, archive/, rejects/, outbox/ under `dir`."""

    dir: Path | None = None
    settle_time: Duration = 5.0
    options: dict[str, Any] = Field(default_factory=dict)


class _CredentialsDirectorySource(PydanticBaseSettingsSource):
    """systemd LoadCredential: `$CREDENTIALS_DIRECTORY/<connector>.<secret>` files."""

    def get_field_value(
        self, field: Any, field_name: str
    ) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return {}
        found: dict[str, dict[str, str]] = {}
        for connector in Connectors.model_fields:
            for secret in SECRET_FIELDS:
                path = Path(directory) / f"{connector}.{secret}"
                if path.is_file():
                    found.setdefault(connector, {})[secret] = path.read_text(
                        encoding="utf-8"
                    ).strip()
        return {"connectors": found} if found else {}


class Settings(BaseSettings):
    """The whole effective configuration of one syncd instance."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    logging: LoggingConfig = LoggingConfig()
    host: HostConfig = HostConfig()
    outbox: OutboxConfig = OutboxConfig()
    health: HealthConfig = HealthConfig()
    connectors: Connectors = Connectors()
    jobs: dict[str, JobConfig] = Field(default_factory=dict)

    source_path: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: credentials > environment > TOML (passed as init kwargs) > defaults.
        return (
            _CredentialsDirectorySource(settings_cls),
            _JobNamesNormalised(env_settings),
            _JobNamesNormalised(init_settings),
        )

    @field_validator("jobs", mode="before")
    @classmethod
    def _normalise_job_names(cls, value: Any) -> Any:
        """Environment variables cannot hold dots: `INSTOCK_ARTICLES` means `instock.articles`."""
        if not isinstance(value, dict):
            return value
        return {_job_key(k): v for k, v in value.items()}

    @property
    def host_dir(self) -> Path:
        return self.host.dir or self.daemon.state_dir / "host"

    @property
    def db_path(self) -> Path:
        return self.daemon.state_dir / "syncd.db"

    def job(self, name: str) -> JobConfig:
        return self.jobs.get(name) or JobConfig()


def _job_key(key: str) -> str:
    """`state_housekeeping` -> `state.housekeeping`: job names are `<system>.<what>` with no
    `_` in `<system>` (tests/unit/test_job_table.py holds every job to it)."""
    key = key.lower()
    if "." in key:
        return key
    return key.replace("_", ".", 1)


class _JobNamesNormalised(PydanticBaseSettingsSource):
    """Job keys are normalised per source, before sources merge, so that an
    environment override of one job key does not replace its TOML section."""

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self.inner = inner

    def get_field_value(
        self, field: Any, field_name: str
    ) -> tuple[Any, str, bool]:  # pragma: no cover
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self.inner()
        jobs = data.get("jobs")
        if isinstance(jobs, dict):
            data = {**data, "jobs": {_job_key(k): v for k, v in jobs.items()}}
        return data


def load_settings(path: Path | str | None = None, *, required: bool = True) -> Settings:
    """Build the effective settings, or raise ConfigError naming every bad key.

    `path=None` means `$SYNCD_CONFIG` or /etc/syncd/syncd.toml; when `required`
    is false a missing default file means "defaults + environment only".
    """
    explicit = path is not None or "SYNCD_CONFIG" in os.environ
    config_path = Path(path or os.environ.get("SYNCD_CONFIG") or DEFAULT_CONFIG_PATH)
    data: dict[str, Any] = {}
    if config_path.is_file():
        try:
            with config_path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot read: {exc.strerror or exc}") from None
    elif explicit or required:
        raise ConfigError(
            f"config file {config_path} not found (pass --config PATH or set SYNCD_CONFIG)"
        )
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = format_validation_errors(exc)
        raise ConfigError(
            f"{config_path}: invalid configuration:\n  " + "\n  ".join(problems), problems
        ) from None
    Settings.source_path = config_path if config_path.is_file() else None
    return settings


def format_validation_errors(exc: ValidationError) -> list[str]:
    """One line per problem: `key.path = value: reason`, secret values redacted."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(p) for p in error["loc"]]
        key = ".".join(loc) or "(top level)"
        reason = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (check the spelling against syncd.example.toml)")
            continue
        if error["type"] == "missing":
            lines.append(f"{key}: required")
            continue
        if loc[:1] == ["connectors"] and len(loc) > 1:  # the variable and credential names
            reason = reason.replace("<NAME>", loc[1].upper()).replace("<connector>", loc[1])
        value = error.get("input")
        field = re.match(r"^(\w+): (.*)$", reason, re.S)
        if field and isinstance(value, dict):
            # A model-level check names its field first: point the key at it.
            loc.append(field.group(1))
            key, reason = ".".join(loc), field.group(2)
            value = value.get(field.group(1))
        if any(part in SECRET_FIELDS for part in loc) or isinstance(value, dict):
            # A blank secret is shown as missing, not as a masked value that looks set.
            blank = value is None or (isinstance(value, str) and not value.strip())
            secret = any(part in SECRET_FIELDS for part in loc) and not blank
            shown = REDACTED if secret else None
        else:
            shown = repr(value)
        line = f"{key} = {shown}: {reason}" if shown is not None else f"{key}: {reason}"
        lines.append(redactor.text(line))  # a URL's password, a `?token=` in a bad value
    return lines


def redacted_dict(settings: Settings) -> dict[str, Any]:
    """The effective config as plain data with every secret replaced by a marker.

    Besides the secret keys: a URL's userinfo and secret-looking query parameters,
    option keys named like secrets, and any known secret value wherever it sits.
    """
    data = settings.model_dump(mode="json")
    for name, conn in settings.connectors.items():
        for secret in SECRET_FIELDS:
            if getattr(conn, secret) is not None:
                data["connectors"][name][secret] = REDACTED
            data["connectors"][name].pop(f"{secret}_file", None)
    redactor.set_secrets(secret_values(settings))
    scrubbed: dict[str, Any] = _scrub(data)
    return scrubbed


def _scrub(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        if value and value != REDACTED and _SECRET_OPTION.search(key):
            return REDACTED
        return redactor.text(value)
    return value


def check_writable(settings: Settings) -> list[str]:
    """`daemon.state_dir` (and `host.dir` when set) can be created and written.

    Probed by creating a file there, as syncd will: permission bits alone do not
    tell (a read-only mount, root's bypass). Nothing is created when the
    directory does not exist yet; then its nearest existing parent is probed.
    """
    problems = []
    places = [("daemon.state_dir", settings.daemon.state_dir)]
    if settings.host.dir is not None:
        places.append(("host.dir", settings.host.dir))
    for key, path in places:
        reason = _not_writable(Path(path))
        if reason:
            problems.append(f"{key} = {str(path)!r}: {reason}")
    return problems


def refuse_unwritable(settings: Settings) -> None:
    """A state or host directory syncd could not write is a config error (78), by key:
    refused at start by `run` and `once` as by `check-config`, not later as a state
    error (75) when the lock or the DB cannot be made."""
    problems = check_writable(settings)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems), problems)


def _not_writable(path: Path) -> str | None:
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            return f"{probe} is a dangling symlink"
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".syncd-check-"):
            pass
    except OSError as exc:
        what = "" if probe == path else f" (it does not exist yet, and its parent {probe} is not)"
        return f"not writable{what}: {exc.strerror or exc}"
    return None


def options_problems(section: str, options: dict[str, Any], model: type[BaseModel]) -> list[str]:
    """`<section>.options` checked against the model of what its readers accept."""
    try:
        model.model_validate(options)
    except ValidationError as exc:
        return [f"{section}.options.{p}" for p in format_validation_errors(exc)]
    return []


class NoOptions(BaseModel):
    """The options of a connector that reads none: any key there is a misspelling."""

    model_config = ConfigDict(extra="forbid")


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted `key = value` pairs, the way an operator greps a config."""
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, dotted))
        else:
            rows.append((dotted, value))
    return rows


def secret_values(settings: Settings) -> list[str]:
    """Every secret in the config, for the log and error redactors."""
    values = []
    for _, conn in settings.connectors.items():
        for secret in SECRET_FIELDS:
            value = conn.secret(secret)
            if value:
                values.append(value)
    return values
