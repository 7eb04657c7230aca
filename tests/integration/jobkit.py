"""Helpers the job contract suites share: run a job, drop a host file, read the state DB."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.jobs.runner import RunResult, run_job
from syncd.state import Store

_dropped = Counter[str]()


def run(settings: Settings, job: str, *, expect: str = "ok", **kw: Any) -> RunResult:
    """Run one job in-process and check how it ended."""
    result = run_job(REGISTRY[job], settings, trigger="test", **kw)
    assert result.status == expect, result.error
    return result


def csv_text(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def drop(settings: Settings, feed: str, text: str, ext: str = "csv") -> None:
    """The host drops a file into its inbox; `host.inbox` loads it at once."""
    _dropped[feed] += 1
    name = f"{feed}-{_dropped[feed]:04d}-{time.monotonic_ns()}.{ext}"
    (settings.host_dir / "inbox" / name).write_text(text)
    result = run(settings, "host.inbox")
    assert result.counts.get("files_archived") == 1, result.counts


def query(settings: Settings, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    with Store.open(settings.db_path, migrate=False) as store:
        return store.query(sql, params)


def open_rejects(settings: Settings, source: str) -> list[dict[str, Any]]:
    """The open rejects of `source` (see `Store.list_rejects`)."""
    with Store.open(settings.db_path, migrate=False) as store:
        return store.list_rejects(status="open", source=source)
