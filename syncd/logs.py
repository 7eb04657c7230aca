"""structlog set-up: JSON lines for journald, a readable console on a TTY.

When the output is the journal (JOURNAL_STREAM, or on request), each line starts with its
syslog priority (`<3>` for an error, sd-daemon(3)), which journald strips and stores as
PRIORITY=, so `journalctl -p warning -u syncd` filters.

Job context (`job`, `run_id`) is bound through contextvars, so every event a
job emits carries it without threading a logger through every call. Every
event passes through the redactor last, so a secret that slips into a message
or a field is replaced before it is written. The same redactor guards the state
DB (the store's write helpers) and the CLI's output.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO
from urllib.parse import quote

import structlog
from structlog.typing import FilteringBoundLogger

Logger = FilteringBoundLogger
"""What `get_logger` and `structlog.get_logger` give once `configure` has run (a filtering
bound logger: `.bind()`, `.info()`, ...)."""

REDACTED = "**********"
FRAGMENT = 6
"""A run of this many characters of a secret is redacted too (a remote's cut echo)."""

_SECRET_KEYS = re.compile(r"(?i)(authorization|token|api[_-]?key|password|secret|cookie)")
_SECRET_NAME = (  # the names of secret parameters, not a secret
    r"(?:access_token|refresh_token|id_token|token|api[_-]?key|apikey|password|passwd|"  # noqa: S105
    r"client_secret|secret|signature)"
)
_NAMES = ("token", "key", "pass", "pwd", "secret", "sig", "cred", "auth")
# Credentials inside free text: (words one of which must occur, lower case; the pattern,
# whose group 1 is the part that stays). The words are a cheap test that lets most text
# skip the regular expressions.
_SECRET_TEXT: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (triggers, re.compile(pattern, re.IGNORECASE))
    for triggers, pattern in (
        # `Authorization: Bearer abc`, `Basic dXNlcjpwdw==`
        (("bearer", "basic"), r"(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"),
        # userinfo of a URL: `https://user:pw@host` keeps the user, `https://tok@host` nothing
        (("://",), r"(\b[a-z][a-z0-9+.-]*://(?:[^/@\s:?#\"']*:)?)[^/@\s?#\"']+(?=@)"),
        # secret-looking query parameters: `?token=`, `&api_key=`, `&X-Amz-Signature=`
        (
            _NAMES,
            r"([?&;][\w.-]*?(?:token|key|password|passwd|pwd|secret|signature|sig|"
            r"credentials?|auth)=)[^&\s\"'#<>]+",
        ),
        # `password=...` in a form body or a message
        (_NAMES, rf"(\b{_SECRET_NAME}=)[^&\s\"'<>,;]+"),
        # `"password": "..."` in an echoed JSON body
        (_NAMES, rf"(\"{_SECRET_NAME}\"\s*:\s*\")[^\"]+"),
        # `x-api-key: ...` in an echoed header list (not JSON's `"api_key": null`)
        (
            ("api",),
            r"(\b(?:x-)?api[-_]?key\s*[:=]\s*[\"']?)(?!(?:null|true|false)\b)[^\s\"',;&]+",
        ),
    )
)
_CLASSES = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"[0-9]"))


def _credential_like(text: str) -> bool:
    """A fragment worth masking: it holds a digit, or mixes upper and lower case (a piece of
    a generated credential; a hex key or a UUID cut after its leading digits, `68014031-`,
    is digits only). A plain word of one case that happens to occur in a secret
    (`instock` of `instock-sandbox-token`) stays readable: masking it would blank job
    names, keys and messages wherever they appear."""
    lower, upper, digit = (bool(c.search(text)) for c in _CLASSES)
    return digit or (lower and upper)


class _Known:
    """One immutable snapshot of the known secrets, swapped whole under the lock."""

    def __init__(self, values: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in values:
            if value and len(value) >= 4:
                forms.add(value)
                forms.add(quote(value, safe=""))  # as it appears in a query or form body
        # Longest first so that a secret containing another is masked whole.
        self.values = tuple(sorted(forms, key=len, reverse=True))
        self.grams = frozenset(
            v[i : i + FRAGMENT] for v in self.values for i in range(len(v) - FRAGMENT + 1)
        )
        # Only a run of the secrets' own characters can hold a fragment: find those runs
        # first (one C-speed scan), then look their FRAGMENT-grams up in a set.
        alphabet = "".join(sorted(set("".join(self.values))))
        self.runs = re.compile(f"[{re.escape(alphabet)}]{{{FRAGMENT},}}") if self.grams else None

    def mask_fragments(self, text: str) -> str:
        """Replace every run of text made of overlapping FRAGMENT-grams of a secret."""
        if self.runs is None:
            return text
        spans: list[list[int]] = []
        for run in self.runs.finditer(text):
            word, base = run.group(), run.start()
            for i in range(len(word) - FRAGMENT + 1):
                if word[i : i + FRAGMENT] in self.grams:
                    start = base + i
                    if spans and start <= spans[-1][1]:
                        spans[-1][1] = start + FRAGMENT
                    else:
                        spans.append([start, start + FRAGMENT])
        parts: list[str] = []
        last = 0
        for start, end in spans:
            if _credential_like(text[start:end]):
                parts += [text[last:start], REDACTED]
                last = end
        return "".join(parts) + text[last:] if parts else text


class Redactor:
    """Replaces known secret values, their fragments, and secret-looking text.

    Known secrets (from the config, and tokens obtained at run time) are replaced
    wherever they occur; so is any run of FRAGMENT or more of their characters that
    holds a digit or mixes cases, which is what is left when a remote (or anyone) cut
    an echoed secret. A run of letters of one case is not (see `_credential_like`). Bearer/Basic credentials, URL userinfo and secret-looking query
    or form parameters are replaced whether or not the secret is known.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configured: tuple[str, ...] = ()
        self._obtained: deque[str] = deque(maxlen=32)
        self._known = _Known(())

    def set_secrets(self, values: Iterable[str]) -> None:
        """The secrets of the current config (replaces the previous set)."""
        with self._lock:
            self._configured = tuple(v for v in values if v)
            self._known = _Known((*self._configured, *self._obtained))

    def reset(self) -> None:
        """Forget every secret (configured and obtained): a fresh process's redactor."""
        with self._lock:
            self._configured = ()
            self._obtained.clear()
            self._known = _Known(())

    def add_secret(self, value: str) -> None:
        """A credential obtained at run time (an OAuth access token), kept with the last few."""
        if not value or len(value) < 4:
            return
        with self._lock:
            if value in self._obtained or value in self._configured:
                return
            self._obtained.append(value)
            self._known = _Known((*self._configured, *self._obtained))

    def text(self, value: str) -> str:
        known = self._known
        for secret in known.values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = known.mask_fragments(value)
        lowered = value.lower()
        for triggers, pattern in _SECRET_TEXT:
            if any(word in lowered for word in triggers):
                value = pattern.sub(_keep_prefix, value)
        return value

    def cut(self, value: str, limit: int, marker: str = "") -> str:
        """Redact first, then cut to `limit` characters: a cut never leaves half a secret."""
        value = self.text(value)
        return value if len(value) <= limit else value[: max(0, limit - len(marker))] + marker

    def value(self, key: str, value: Any) -> Any:
        if _SECRET_KEYS.search(key) and value not in (None, "", False):
            return REDACTED if not isinstance(value, dict | list) else self.any(value)
        return self.any(value)

    def any(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.any(v) for v in value]
        if isinstance(value, BaseException):
            return self.text(str(value))
        return value

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event):
            if key in ("exception", "event"):
                if isinstance(event[key], str):
                    event[key] = self.text(event[key])
                continue
            event[key] = self.value(key, event[key])
        return event


def _keep_prefix(match: re.Match[str]) -> str:
    kept = next((g for g in match.groups() if g is not None), "")
    return kept + REDACTED


redactor = Redactor()


SYSLOG_PRIORITIES = {
    "critical": 2,  # SD_CRIT
    "exception": 3,
    "error": 3,  # SD_ERR
    "warning": 4,  # SD_WARNING
    "warn": 4,
    "info": 6,  # SD_INFO
    "debug": 7,  # SD_DEBUG
}
"""Log level -> syslog priority, the `<N>` prefix of sd-daemon(3) that journald reads."""

PriorityPrefix = Literal["auto", "always", "never"]


def stream_is_journal(stream: TextIO) -> bool:
    """The stream is connected to the journal: systemd sets JOURNAL_STREAM to the
    `<device>:<inode>` (decimal) of the stdout/stderr it connected (systemd.exec(5)); a
    process whose output was redirected elsewhere since keeps the variable, so the file
    descriptor is compared, not only the variable's presence."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not device or not inode:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
    return (str(st.st_dev), str(st.st_ino)) == (device, inode)


class PriorityPrefixed:
    """Wraps a renderer: every line it writes starts with `<N>`, the event's syslog
    priority, so `journalctl -p warning` filters syncd's lines (a multi-line console
    event, a traceback, carries it on each line)."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        level = str(event.get("level") or name).lower()
        prefix = f"<{SYSLOG_PRIORITIES.get(level, 6)}>"
        text = str(self.renderer(logger, name, event))
        return "\n".join(prefix + line for line in text.split("\n"))


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    priority_prefix: PriorityPrefix = "auto",
) -> None:
    """Configure structlog (and stdlib logging from libraries) once per process.

    `priority_prefix`: `auto` prefixes each line with its syslog priority when the
    stream is the journal (`stream_is_journal`), `always` and `never` as they say.
    """
    stream = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    if priority_prefix == "always" or (priority_prefix == "auto" and stream_is_journal(stream)):
        renderer = PriorityPrefixed(renderer)
    # A traceback is text like any other: made a string first, so the redactor sees it
    # (a console renderer would otherwise format it after the redactor ran).
    tail: list[Any] = [structlog.processors.format_exc_info, redactor, renderer]
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # httpx and apscheduler log through stdlib logging; keep them quiet and redacted.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))


def get_logger(**bound: Any) -> Logger:
    logger: Logger = structlog.get_logger("syncd")
    return logger.bind(**bound)
