"""Settled inbox files for the host inbox unit suites (their `host` and `db` fixtures are
in conftest.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

# Every file dropped is stamped one second newer than the last, starting an hour ago,
# so each is settled and the inbox takes them in the order they were dropped.
_clock = [time.time() - 3600]


def settle(path: Path) -> None:
    """Stamp `path` (or the symlink itself) a second newer than the last file dropped."""
    _clock[0] += 1
    os.utime(path, (_clock[0], _clock[0]), follow_symlinks=False)


def drop(host: Path, name: str, content: str | bytes) -> Path:
    """Put a settled file in the inbox; each one a second newer than the last."""
    path = host / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    settle(path)
    return path
