"""structlog set-up: JSON lines for journald, a readable console on a TTY.

Job context (`job`, `run_id`) is bound through contextvars, so every event a
job emits carries it without threading a logger through every call. Every
event passes through the redactor last, so a secret that slips into a message
or a field is replaced before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "**********"
_SECRET_KEYS = re.compile(r"(?i)(authorization|token|api[_-]?key|password|secret|cookie)")
# Bearer/basic credentials and key=value secrets inside free text.
_SECRET_TEXT = re.compile(
    r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+|"
    r"((?:access_token|refresh_token|token|api_key|apikey|password|client_secret)=)[^&\s\"']+"
)


class Redactor:
    """Replaces known secret values and secret-looking fields in every event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def set_secrets(self, values: Iterable[str]) -> None:
        # Longest first so that a secret containing another is masked whole.
        cleaned = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)
        with self._lock:
            self._values = tuple(cleaned)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _SECRET_TEXT.sub(
            lambda m: (m.group(1) + " " + REDACTED) if m.group(1) else m.group(2) + REDACTED,
            value,
        )

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


redactor = Redactor()


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and stdlib logging from libraries) once per process."""
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
        tail: list[Any] = [structlog.processors.format_exc_info, redactor, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        tail = [redactor, renderer]
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
                *([structlog.processors.format_exc_info] if use_json else []),
                redactor,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("syncd").bind(**bound)
