"""What jobs need to queue host outbox files: formats, and files rendered in SQL."""

from __future__ import annotations

import dataclasses
import json

from syncd.config import Settings
from syncd.host.feeds import Format, host_options
from syncd.host.outbox import host_file_intent
from syncd.state import NewIntent, RawJson


def host_format(settings: Settings, stream: str) -> Format:
    """`host.options.outbox_formats.<stream>`, else `host.options.outbox_format`."""
    return host_options(settings.host).outbox_format_for(stream)


def host_file_intent_json(stream: str, rows_json: str, fmt: Format, key: str) -> NewIntent:
    """Like `host_file_intent`, with the rows already a JSON array (rendered by SQLite),
    so a large chunk never becomes Python objects on its way to the outbox."""
    intent = host_file_intent(stream, [], fmt, key=key)
    head = json.dumps({"stream": stream, "format": fmt}, separators=(",", ":"))[:-1]
    return dataclasses.replace(intent, payload=RawJson(f'{head},"rows":{rows_json}}}'))
