"""JSON text that is rendered once and passed along as is.

A payload hashed for a diff, kept in the state DB and sent in a request body is encoded once
(`canonical`) and carried as `RawJson`: the store writes it unchanged and the HTTP layer sends
it as the body without encoding it again.
"""

from __future__ import annotations

import json
from typing import Any


class RawJson(str):
    """Text that already is JSON (from `canonical`, or from SQLite's json functions)."""

    __slots__ = ()


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def canonical(value: Any) -> str:
    """Sorted keys, no spaces, anything unknown as its str(): the same value always gives
    the same text, so the text can be hashed and compared."""
    if isinstance(value, RawJson):
        return str(value)
    return _ENCODE(value)
