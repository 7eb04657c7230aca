"""Configuration: defaults < TOML file < SYNCD_* environment < secret files.

Everything an operator can set lives in these models, so `syncd check-config`
and `config/syncd.example.toml` describe the same thing. Secrets are
`SecretStr`: they print as `**********` and are read from files when given as
`<key>_file` or as systemd credentials (`$CREDENTIALS_DIRECTORY/<connector>.<key>`).
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from syncd.connectors.dsorder import DSOrderConfig
from syncd.connectors.import_jobs import ImportJobsConfig
from syncd.connectors.instock import InstockConfig
from syncd.connectors.netstock.client import NetstockConfig
from syncd.connectors.oregon_siop import OregonSiopConfig
from syncd.errors import ConfigError
from syncd.logs import redactor
from syncd.sections import (
    MIB,
    SECRET_FIELDS,
    AnswerSize,
    ApiKeyConnectorConfig,
    ConnectorConfig,
    Duration,
    NoOptions,
    RateLimit,
    RetryPolicy,
    Schedule,
    Timeouts,
    is_loopback,
    parse_duration,
)
from syncd.sections import Section as _Section

# The connector section models and the building blocks from syncd.sections are
# re-exported: whatever reads settings imports them from here.
__all__ = [
    "CONNECTORS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "MIB",
    "REDACTED",
    "SECRET_FIELDS",
    "AnswerSize",
    "ApiKeyConnectorConfig",
    "ConfigError",
    "ConnectorConfig",
    "Connectors",
    "DSOrderConfig",
    "DaemonConfig",
    "Duration",
    "HealthConfig",
    "HostConfig",
    "ImportJobsConfig",
    "InstockConfig",
    "JobConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NetstockConfig",
    "NoOptions",
    "OregonSiopConfig",
    "OutboxConfig",
    "RateLimit",
    "RetryPolicy",
    "Schedule",
    "Settings",
    "Timeouts",
    "check_writable",
    "flatten",
    "format_validation_errors",
    "is_loopback",
    "load_settings",
    "options_problems",
    "parse_duration",
    "redacted_dict",
    "refuse_unwritable",
    "secret_values",
    "split_listen",
]

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.toml")
DEFAULT_STATE_DIR = Path("/var/lib/syncd")
REDACTED = "**********"
# Option keys whose values check-config never prints (`options.password`, `options.api_key`).
_SECRET_OPTION = re.compile(
    r"(?i)(^|[_-])(token|api[_-]?key|apikey|password|passwd|secret|signature|cookie)$"
)


class Connectors(_Section):
    """One section per remote system; a disabled connector is never contacted.

    The one declaration of the connectors there are: a field here, typed by the section
    model its connector module defines (which names the client and its options model).
    `CONNECTORS` and check-config's options checks follow from these fields."""

    instock: InstockConfig = InstockConfig()
    dsorder: DSOrderConfig = DSOrderConfig()
    netstock: NetstockConfig = NetstockConfig()
    import_jobs: ImportJobsConfig = ImportJobsConfig()
    oregon_siop: OregonSiopConfig = OregonSiopConfig()

    def items(self) -> list[tuple[str, ConnectorConfig]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]


def _connector_models() -> Mapping[str, type[ConnectorConfig]]:
    table: dict[str, type[ConnectorConfig]] = {}
    for name, field in Connectors.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, ConnectorConfig)):
            raise TypeError(f"connectors.{name}: {model!r} is not a ConnectorConfig")
        table[name] = model
    return MappingProxyType(table)


CONNECTORS: Mapping[str, type[ConnectorConfig]] = _connector_models()
"""Each connector's section model by name (`.client`, `.options_model`), read off `Connectors`."""


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
    # Each line's syslog priority as a `<N>` prefix, which journald reads (journalctl -p):
    # "auto" when the output is the journal (JOURNAL_STREAM), "always", or "never".
    priority_prefix: Literal["auto", "always", "never"] = "auto"


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


def split_listen(value: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9464` for IPv6) -> (host, port); ValueError naming what is wrong."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9464 or [::1]:9464)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class MetricsConfig(_Section):
    """Prometheus metrics: a node_exporter textfile and/or an HTTP `/metrics` endpoint."""

    # The textfile collector's file, rewritten atomically after every run; its directory
    # is node_exporter's --collector.textfile.directory. None: no file.
    textfile: Path | None = None
    # Octal mode of the textfile; world-readable by default (node_exporter runs as
    # another user, and the file holds no secret). No execute or set-id bits.
    textfile_mode: int = 0o644
    # `host:port` of the `/metrics` endpoint; None: no HTTP server.
    listen: str | None = None
    # A non-loopback `listen` exposes the metrics to the network: an explicit opt-in.
    allow_non_loopback: bool = False

    @field_validator("textfile")
    @classmethod
    def _prom_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_absolute():
            raise ValueError("must be an absolute path (systemd starts syncd in /)")
        if value.suffix != ".prom":
            raise ValueError(
                "must end in .prom: node_exporter's textfile collector reads only *.prom files"
            )
        return value

    @field_validator("textfile_mode", mode="before")
    @classmethod
    def _octal(cls, value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value.strip()):
            value = int(value.strip().replace("o", ""), 8)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError('expected an octal mode as a string, e.g. "0644" or "0640"')
        if value & ~0o666:
            raise ValueError(
                f"{value:04o} sets execute or set-id bits; a metrics file needs at most 0666"
            )
        if not value & 0o400:
            raise ValueError(f"{value:04o} leaves the file unreadable even by its owner")
        return value

    @field_serializer("textfile_mode")
    def _show_octal(self, value: int) -> str:
        return f"{value:04o}"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> MetricsConfig:
        if self.listen is None or self.allow_non_loopback:
            return self
        host, _port = split_listen(self.listen)
        if not is_loopback(host):
            raise ValueError(
                f"listen: {self.listen!r} is not a loopback address; the metrics would be "
                "open to the network. Use 127.0.0.1 or [::1] (and a reverse proxy or "
                "Prometheus on this host), or set metrics.allow_non_loopback = true"
            )
        return self


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
    metrics: MetricsConfig = MetricsConfig()
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
    if settings.metrics.textfile is not None:  # its directory: the file is renamed into it
        places.append(("metrics.textfile", settings.metrics.textfile))
    for key, path in places:
        probe = Path(path).parent if key == "metrics.textfile" else Path(path)
        reason = _not_writable(probe)
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
