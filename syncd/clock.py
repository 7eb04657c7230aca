"""Time in one place: UTC, ISO-8601 text in the state DB, easy to freeze in tests, and
spans written the one way every screen (status, health) shows them."""

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


def duration_text(seconds: float) -> str:
    """A span rounded to what matters: `40 s`, `3 min`, `2 h 14 min`, `3 d 4 h`."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        hours, minutes = divmod(int(seconds // 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(int(seconds // 3600), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(moment: datetime | None, now: datetime) -> str:
    """`3 min ago`, `in 20 s`, `now`; "" for no moment."""
    if moment is None:
        return ""
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {duration_text(delta)}" if delta > 0 else f"{duration_text(delta)} ago"
