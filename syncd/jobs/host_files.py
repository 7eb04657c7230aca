"""What jobs need to queue host outbox files: the format configured per stream."""

from __future__ import annotations

from syncd.config import Settings
from syncd.host.feeds import Format, host_options


def host_format(settings: Settings, stream: str) -> Format:
    """`host.options.outbox_formats.<stream>`, else `host.options.outbox_format`."""
    return host_options(settings.host).outbox_format_for(stream)
