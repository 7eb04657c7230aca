"""The SQLite state store: schema, checkpoints, outbox, rejects, runs, alerts.

The core tables are written here alone (`store`); `queries` holds the read-only reports
the CLI and `syncd status` print, `ledger` the accepted/failed ledger of the jobs that
drive a remote themselves.
"""

from syncd.jsontext import RawJson
from syncd.state.lock import StateLock
from syncd.state.migrations import SCHEMA_VERSION
from syncd.state.store import Intent, NewIntent, NewReject, Store

__all__ = ["SCHEMA_VERSION", "Intent", "NewIntent", "NewReject", "RawJson", "StateLock", "Store"]
