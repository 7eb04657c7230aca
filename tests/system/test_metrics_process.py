"""`syncd run` as a real process with both metrics exposures: the node_exporter textfile
appears, is replaced whole (rename, never rewritten in place) with mode 0644 under the
daemon's own umask, and `GET /metrics` answers from the daemon until it stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.system.conftest import wait_until

pytestmark = pytest.mark.system

HOUSEKEEPING = "state.housekeeping"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def housekeeping_runs(text: str) -> float:
    """`syncd_runs_total{job="state.housekeeping",status="ok"}` in an exposition; parsing
    a cut-off file raises."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "syncd_runs_total" and sample.labels == {
                "job": HOUSEKEEPING,
                "status": "ok",
            }:
                return sample.value
    return 0.0


def test_daemon_writes_the_textfile_atomically_and_serves_metrics(
    spawn: Any, notify: Any, write_config: Any, tmp_path: Path
) -> None:
    """Housekeeping runs every second: each run replaces the textfile by rename (a new
    inode each time), every read of it parses whole with the runs counter growing, its
    mode is 0644 though syncd's umask is 027 or stricter, no temporary file is left
    after SIGTERM, and `/metrics` answers the same counter until the daemon stops."""
    textfile = tmp_path / "node" / "syncd.prom"
    port = free_port()
    config = write_config(
        housekeeping="1s",
        extra=f"""
[metrics]
textfile = {json.dumps(str(textfile))}
listen = "127.0.0.1:{port}"
""",
    )
    mark = notify.mark()
    daemon = spawn(config)
    notify.wait_for("READY=1", since=mark)
    wait_until(textfile.exists, 10, "the metrics textfile")

    inodes: set[int] = set()
    counts: list[float] = []
    deadline = time.monotonic() + 20
    while (len(inodes) < 3 or counts[-1] < 2) and time.monotonic() < deadline:
        with textfile.open() as f:  # the file as one inode, even if replaced meanwhile
            inodes.add(os.fstat(f.fileno()).st_ino)
            assert stat.S_IMODE(os.fstat(f.fileno()).st_mode) == 0o644
            counts.append(housekeeping_runs(f.read()))
        time.sleep(0.05)
    assert len(inodes) >= 3, "the textfile was not replaced after runs"
    assert counts[-1] >= 2
    assert counts == sorted(counts)  # never an older or a half file

    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    assert housekeeping_runs(answer.text) >= counts[-1]

    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    assert sorted(p.name for p in textfile.parent.iterdir()) == ["syncd.prom"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
