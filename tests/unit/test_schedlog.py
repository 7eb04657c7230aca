"""APScheduler's per-tick "maximum number of running instances reached" warnings are
folded into one `job_overrun_started` and one `job_overrun_ended` with the count."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd import schedlog
from syncd.logs import configure_logging


def test_a_job_overrunning_many_ticks_logs_two_events() -> None:
    """A real scheduler ticking every 50 ms behind a run that takes ~0.6 s: APScheduler
    skips a dozen ticks; the log holds one start, one end with the count, and none of
    APScheduler's own lines."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    scheduler = BackgroundScheduler(
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 10},
        timezone=UTC,
    )
    overruns = schedlog.install(scheduler)
    release = threading.Event()
    runs: list[float] = []

    def slow() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            release.wait(5)

    scheduler.add_job(slow, IntervalTrigger(seconds=0.05), id="instock.orders")
    scheduler.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            episode = overruns._episodes.get("instock.orders")
            if episode is not None and episode.skipped >= 5:
                break
            time.sleep(0.02)
        release.set()
        deadline = time.monotonic() + 5
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        release.set()
        scheduler.shutdown(wait=True)
    text = stream.getvalue()
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    names = [e["event"] for e in events]
    assert names.count("job_overrun_started") == 1, names
    assert names.count("job_overrun_ended") == 1, names
    started = next(e for e in events if e["event"] == "job_overrun_started")
    ended = next(e for e in events if e["event"] == "job_overrun_ended")
    assert (started["job"], started["level"]) == ("instock.orders", "warning")
    assert ended["skipped"] >= 5
    assert "maximum number of running instances" not in text


def test_other_apscheduler_warnings_still_pass() -> None:
    """Only the skip warning is dropped: APScheduler's other lines reach the log."""
    import logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("apscheduler.scheduler").addFilter(schedlog.DROP_SKIPPED)
    logger = logging.getLogger("apscheduler.scheduler")
    logger.warning(
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)', "x", 1
    )
    logger.warning('Run time of job "%s" was missed by %s', "x", "0:00:03")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "was missed by" in lines[0]
