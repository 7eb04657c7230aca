"""`syncd run` as a real process against a hostile upstream: SIGTERM during a stuck answer.

An Instock inventory answer that trickles (headers, then nothing for a minute) must
not hold a stopping daemon: SIGTERM ends the read at once, the run is recorded as
interrupted, and the process exits well before the request deadline or the
shutdown timeout.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.hostile_upstream import HostileUpstream, json_answer, trickle
from tests.system.conftest import wait_until
from tests.system.test_daemon_process import runs, start_daemon

pytestmark = pytest.mark.system


def test_sigterm_does_not_wait_for_a_stuck_answer(
    spawn: Any, notify: Any, write_config: Any, state_dir: Any
) -> None:
    """With a 60 s request deadline and a 5 s shutdown timeout, a stalled inventory answer
    ends within a second of SIGTERM: exit 0, the run `interrupted`."""
    with HostileUpstream() as up:
        # The Instock jobs check the site's environment first.
        up.script("GET", "/sites", json_answer({"sites": [{"site_id": "S1", "is_virtual": True}]}))
        up.script("GET", "/S1/inventory", trickle(b'{"articles": []}', 60))
        extra = f"""
[connectors.instock]
enabled = true
base_url = "{up.base_url}"
token = "hostile-token"
site_id = "S1"
environment = "sandbox"
request_deadline = "60s"
retry = {{ max_attempts = 1 }}
"""
        daemon = start_daemon(spawn, notify, write_config(extra=extra), state_dir)
        daemon.send(signal.SIGUSR1)  # run every job now, inventory among them
        wait_until(lambda: up.requests("/S1/inventory"), 10, "the inventory request")
        time.sleep(0.3)  # the answer's headers are in; its body is not coming
        started = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(timeout=10) == 0
        stopped_in = time.monotonic() - started
    assert stopped_in < 2.5, f"took {stopped_in:.1f}s"
    inventory = runs(state_dir, "instock.inventory")
    assert inventory, "no inventory run recorded"
    assert inventory[-1]["status"] == "interrupted", inventory[-1]
