"""The identity of an Instock move and the host journal files it goes out in, shared by
instock.moves (the live watermark) and the backfill job (a past period beside it).

A move has no id: its identity is its content (`move_key`, all documented fields) and
its occurrence number among identical moves of the window it was read in, the key of
`instock_moves` (`UNIQUE (move_key, occurrence)`). A move journalled once is never
journalled again, by either job; the host files carry journal ids (`moves:<first>-<last>`),
so a file queued twice is one intent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from syncd.connectors.instock import Move
from syncd.host.feeds.fields import Format
from syncd.jsontext import compact, json_safe, text_hash
from syncd.send.host import host_file_intent
from syncd.state import NewIntent, Store
from syncd.state.mirror.instock_moves import MOVE_FIELDS, journalled_after


def move_key(move: Mapping[str, Any]) -> str:
    """Content identity of a move (all documented fields)."""
    return text_hash(compact([move.get(f) for f in MOVE_FIELDS]), None, algorithm="sha1")


def journal_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {f: row[f] for f in MOVE_FIELDS}


def window_row(move: Move, request_id: str | None) -> tuple[Any, ...]:
    """A valid move as staged: (move_key, *MOVE_FIELDS, extra JSON or None, the request id
    of the page it came in)."""
    data = move.model_dump()
    extra = {k: v for k, v in data.items() if k not in MOVE_FIELDS}
    return (
        move_key(data),
        *(data.get(f) for f in MOVE_FIELDS),
        json.dumps(json_safe(extra)) if extra else None,
        request_id,
    )


def journal_intents(store: Store, after_id: int, chunk: int, fmt: Format) -> Iterable[NewIntent]:
    """One host `moves` file intent per `chunk` moves journalled after `after_id`."""
    last = after_id
    while True:
        rows = journalled_after(store, last, chunk)
        if not rows:
            return
        first, last = rows[0]["id"], rows[-1]["id"]
        yield host_file_intent(
            "moves", [journal_row(r) for r in rows], fmt, key=f"moves:{first}-{last}"
        )
