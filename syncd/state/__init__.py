"""The SQLite state store: schema, checkpoints, outbox, rejects, runs, alerts."""

from syncd.jsontext import RawJson
from syncd.state.lock import StateLock
from syncd.state.migrations import SCHEMA_VERSION
from syncd.state.store import Intent, NewIntent, NewReject, Store

__all__ = ["SCHEMA_VERSION", "Intent", "NewIntent", "NewReject", "RawJson", "StateLock", "Store"]
