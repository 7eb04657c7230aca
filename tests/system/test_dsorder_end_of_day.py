"""DSOrder's end-of-day pull in a running `syncd run`: it fires at the site's local time
just before midnight, even when a regular pull is still going on at that moment.

The site zone is a fixed-offset zone chosen so that the site's local time is in its last
hour of the day now, and `end_of_day_pull` so that the end-of-day pull is due seconds
after the daemon starts: a real daemon, a real scheduler, no fake clock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from syncd.sandbox.base import ManualClock, Request, Response
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from tests.system.conftest import NotifySocket, SyncdProcess, wait_until

pytestmark = pytest.mark.system

FIRE_IN = 4.0  # seconds from writing the config to the end-of-day pull


class StalledDSOrder(DSOrderSim):
    """The first /orders/submitted answer waits until the test lets it go."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_asked = threading.Event()
        self.let_go = threading.Event()

    def _submitted(self, request: Request) -> Response:
        if not self.first_asked.is_set():
            self.first_asked.set()
            self.let_go.wait(30)
        return super()._submitted(request)


def zone_in_its_last_hour() -> tuple[str, datetime]:
    """A fixed-offset zone whose local time is 23:00..23:59:50 now, and that local time."""
    while True:
        now = datetime.now(UTC)
        offset = (23 - now.hour) % 24
        if offset > 14:  # Etc/GMT zones span UTC-12..UTC+14
            offset -= 24
        zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"  # Etc/GMT-2 is UTC+2
        local = now.astimezone(ZoneInfo(zone))
        assert local.hour == 23, (zone, local)
        if local.minute * 60 + local.second < 3590:
            return zone, local
        time.sleep(11)  # too close to midnight: take the next hour's zone


@pytest.fixture
def ds() -> Iterator[StalledDSOrder]:
    with StalledDSOrder(seed=3, clock=ManualClock(), tz="UTC") as sim:
        yield sim


@pytest.fixture
def ins() -> Iterator[InstockSim]:
    with InstockSim(seed=3, articles=10) as sim:
        yield sim


def runs(state_dir: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{state_dir / 'syncd.db'}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [
            dict(r)
            for r in conn.execute(
                "SELECT trigger, status, started_at, finished_at FROM runs "
                "WHERE job = 'dsorder.pull' AND status != 'running' ORDER BY id"
            )
        ]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_end_of_day_pull_fires_at_local_time_even_while_a_pull_is_going_on(
    tmp_path: Path,
    ds: StalledDSOrder,
    ins: InstockSim,
    spawn: Callable[..., SyncdProcess],
    notify: NotifySocket,
) -> None:
    """The regular pull (at start) is still waiting for DSOrder when the end-of-day time
    comes: the end-of-day pull runs as soon as it ends, not skipped until tomorrow; its
    checkpoint counts as having covered the day (no midnight-gap alert)."""
    zone, local = zone_in_its_last_hour()
    to_midnight = (
        local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1) - local
    ).total_seconds()
    lead = int(to_midnight - FIRE_IN)
    fire_at = datetime.now(UTC) + timedelta(seconds=to_midnight - lead)
    state_dir = tmp_path / "state"
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"""
[daemon]
state_dir = {json.dumps(str(state_dir))}
shutdown_timeout = "5s"
site_timezone = "{zone}"

[logging]
format = "json"
level = "info"

[host]
dir = {json.dumps(str(tmp_path / "host"))}

[connectors.instock]
enabled = true
base_url = "{ins.base_url}"
token = "{ins.token}"
site_id = "{ins.site_id}"
environment = "sandbox"

[connectors.dsorder]
enabled = true
base_url = "{ds.base_url}"
token = "{ds.token}"
timeouts = {{ connect = "2s", read = "30s" }}

[jobs."dsorder.pull"]
schedule = {{ interval = "1h" }}
options = {{ end_of_day_pull = "{lead}s" }}

[jobs."dsorder.progress"]
enabled = false
[jobs."host.inbox"]
enabled = false
[jobs."instock.orders"]
enabled = false
[jobs."instock.articles"]
enabled = false
[jobs."instock.inventory"]
enabled = false
[jobs."instock.moves"]
enabled = false
[jobs."state.housekeeping"]
schedule = {{ interval = "1h" }}
""",
        encoding="utf-8",
    )
    mark = notify.mark()
    daemon = spawn(config)
    notify.wait_for("READY=1", timeout=20, since=mark)
    assert ds.first_asked.wait(10), "the regular pull never asked DSOrder"
    if datetime.now(UTC) >= fire_at:
        pytest.skip("the daemon started too slowly on this machine to test the overlap")
    wait_until(lambda: datetime.now(UTC) > fire_at + timedelta(seconds=0.5), 10, "fire time")
    ds.let_go.set()
    done = wait_until(
        lambda: (r := runs(state_dir)) and len(r) >= 2 and r,
        10,
        "the end-of-day pull after the regular one",
    )
    regular, end_of_day = done[:2]
    assert [regular["trigger"], end_of_day["trigger"]] == ["schedule", "daily"], done
    assert [regular["status"], end_of_day["status"]] == ["ok", "ok"], done
    assert end_of_day["started_at"] >= regular["finished_at"]
    assert daemon.events("job_waited"), "the end-of-day pull did not wait for the regular one"
    conn = sqlite3.connect(f"file:{state_dir / 'syncd.db'}?mode=ro", uri=True)
    (last_pull,) = conn.execute(
        "SELECT value FROM checkpoints WHERE stream = 'dsorder.last_pull'"
    ).fetchone()
    conn.close()
    pulled_local = datetime.fromisoformat(last_pull).astimezone(ZoneInfo(zone))
    assert pulled_local.hour == 23
    assert pulled_local >= fire_at.astimezone(ZoneInfo(zone)) - timedelta(seconds=1)
