"""Time in one place: UTC, ISO-8601 text in the state DB, easy to freeze in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z: sorts as text, reads well in sqlite3."""
    moment = (moment or utcnow()).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso_in(seconds: float, moment: datetime | None = None) -> str:
    return iso((moment or utcnow()) + timedelta(seconds=seconds))
