"""`syncd inspect`: Datasette over the state DB, read-only, on loopback, with syncd's
descriptions and canned queries (`syncd.state.datasette`).

The file is opened as Datasette opens a database that may change (`?mode=ro`): the
daemon keeps writing while an operator looks, which rules out `immutable`. Datasette is
an optional dependency: `pip install 'syncd[inspect]'`.
"""

from __future__ import annotations

from pathlib import Path

from syncd.config import is_loopback
from syncd.errors import NotFoundError, UnavailableError, UsageError
from syncd.state.datasette import metadata


def serve(db_path: Path, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both)."""
    if not is_loopback(host):
        raise UsageError(
            f"--host {host!r}: syncd inspect binds a loopback address only "
            "(reach it from elsewhere through an SSH tunnel: ssh -L 8001:127.0.0.1:8001 site)"
        )
    if not db_path.exists():
        raise NotFoundError(f"no state DB at {db_path} yet (has syncd run with this config?)")
    try:
        import uvicorn
        from datasette.app import Datasette
    except ImportError:
        raise UnavailableError(
            "syncd inspect needs Datasette: pip install 'syncd[inspect]'"
        ) from None
    app = Datasette(
        [str(db_path)],
        metadata=metadata(db_path.stem),
        settings={"sql_time_limit_ms": 5000, "allow_download": False},
    )
    uvicorn.run(app.app(), host=host, port=port, log_level="warning")
