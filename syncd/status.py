"""What `syncd status` and the systemd STATUS= line show, read from the state DB.

Reads only, so it works from another process while the daemon runs (WAL).
"""

from __future__ import annotations

import json
from typing import Any

from syncd.clock import parse_iso, utcnow
from syncd.state import Store, queries


def job_summaries(store: Store) -> list[dict[str, Any]]:
    """Per job: the last run, the last success and the lag since then."""
    rows = queries.last_runs(store)
    now = utcnow()
    for row in rows:
        row["counts"] = json.loads(row["counts"] or "{}")
        row["warnings"] = json.loads(row["warnings"] or "[]")
        row["lag_s"] = (
            round((now - parse_iso(row["last_ok_at"])).total_seconds(), 1)
            if row["last_ok_at"]
            else None
        )
    return rows


def warning_text(warning: Any) -> str:
    """One run warning as a line: its message, after what it is about (an endpoint, a job,
    an order...), whatever shape the job gave it."""
    if not isinstance(warning, dict):
        return str(warning)
    about = [f"{k} {v}" for k, v in warning.items() if k != "message" and v not in (None, "")]
    message = str(warning.get("message", ""))
    return f"{', '.join(about)}: {message}" if about and message else message or ", ".join(about)


def status_report(store: Store) -> dict[str, Any]:
    return {
        "jobs": job_summaries(store),
        "outbox_pending": {
            r["destination"]: {"pending": r["n"], "oldest": r["oldest"], "retrying": r["retrying"]}
            for r in queries.pending_intents_by_destination(store)
        },
        "rejects_open": {r["source"]: r["n"] for r in queries.open_rejects_by_source(store)},
        "alerts_open": queries.alerts(store),
        "checkpoints": queries.checkpoints(store),
    }


def status_line(store: Store, running: list[str] | None = None) -> str:
    """One line for systemd's STATUS=: the last runs and what needs attention."""
    jobs = job_summaries(store)
    failed = [j["job"] for j in jobs if j["status"] == "failed"]
    pending = queries.pending_intent_count(store)
    rejects = queries.open_reject_count(store)
    alerts = queries.alerts(store)
    last = max(jobs, key=lambda j: j["started_at"], default=None)
    parts = []
    if running:
        parts.append("running " + ",".join(running))
    if last:
        parts.append(f"last {last['job']} {last['status']} at {last['started_at'][11:19]}Z")
    parts.append(f"{len(jobs) - len(failed)}/{len(jobs)} jobs ok")
    if failed:
        parts.append("failed: " + ",".join(failed))
    parts.append(f"outbox {pending}, rejects {rejects}, alerts {len(alerts)}")
    if alerts:
        parts.append("ALERT " + alerts[0]["message"][:120])
    return "; ".join(parts)
