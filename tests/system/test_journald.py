"""Under systemd, syncd's output is the journal: each line then starts with its syslog
priority (`<3>` error, `<4>` warning, `<6>` info; sd-daemon(3)), which journald strips
into PRIORITY= so `journalctl -p warning -u syncd` filters. Checked on the real lines of
a real `syncd run` whose stdout is the stream JOURNAL_STREAM names, as systemd sets it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from syncd.state import Store
from tests.system.conftest import clean_env, wait_until

pytestmark = pytest.mark.system

PRIORITY = {"error": 3, "warning": 4, "info": 6}
LINE = re.compile(r"^<(\d)>(\{.*\})$")


class Output:
    """A syncd process whose stdout is a pipe this test made (so it knows its inode)."""

    def __init__(self, config: Path, notify_path: Path, **env: str) -> None:
        read, write = os.pipe()
        st = os.fstat(write)
        self.journal_stream = f"{st.st_dev}:{st.st_ino}"
        env = {"JOURNAL_STREAM": self.journal_stream, **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd.cli", "run", "--config", str(config)],
            env=clean_env(NOTIFY_SOCKET=str(notify_path), **env),
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self._reader.start()

    def _pump(self, fd: int) -> None:
        with os.fdopen(fd, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                self.lines.append(line.rstrip("\n"))

    def parsed(self) -> list[tuple[int | None, dict]]:
        found = []
        for line in list(self.lines):
            match = LINE.match(line)
            found.append(
                (int(match.group(1)), json.loads(match.group(2)))
                if match
                else (None, json.loads(line))
            )
        return found

    def has(self, event: str) -> bool:
        return any(e.get("event") == event for _, e in self.parsed())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=2)


def test_lines_carry_their_priority_when_stdout_is_the_journal(
    notify, write_config, state_dir
) -> None:
    """An info, a warning and an error line of a real daemon each start with <6>, <4>, <3>,
    and every line carries the priority of its level."""
    config = write_config()
    state_dir.mkdir(parents=True)
    with Store.open(state_dir / "syncd.db") as store:  # a run a killed syncd left running
        store.start_run("state.housekeeping", "left-running", "schedule")
    daemon = Output(config, notify.path)
    try:
        wait_until(lambda: daemon.has("daemon_started"), 15, "daemon_started")
        config.write_text("[daemon\n", encoding="utf-8")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.has("config_reload_failed"), 10, "config_reload_failed")
    finally:
        daemon.stop()
    parsed = daemon.parsed()
    assert parsed, "no output"
    assert all(priority is not None for priority, _ in parsed), daemon.lines
    for priority, event in parsed:
        assert priority == PRIORITY[event["level"]], (priority, event)
    by_event = {event["event"]: priority for priority, event in parsed}
    assert by_event["daemon_started"] == 6
    assert by_event["runs_interrupted_by_crash"] == 4
    assert by_event["config_reload_failed"] == 3


@pytest.mark.parametrize(
    ("journal_stream", "prefix", "prefixed"),
    [
        pytest.param("1:2", "auto", False, id="another-stream-auto"),
        pytest.param("1:2", "always", True, id="another-stream-always"),
        pytest.param(None, "never", False, id="the-journal-never"),
    ],
)
def test_prefix_only_for_the_journal_or_on_request(
    notify, write_config, journal_stream, prefix, prefixed
) -> None:
    """JOURNAL_STREAM naming another stream (output redirected since) gives plain JSON
    lines; logging.priority_prefix = "always" or "never" overrides the detection."""
    config = write_config()
    text = config.read_text(encoding="utf-8").replace(
        'level = "info"', f'level = "info"\npriority_prefix = "{prefix}"'
    )
    config.write_text(text, encoding="utf-8")
    # None: JOURNAL_STREAM names the real stdout, as under systemd.
    env = {} if journal_stream is None else {"JOURNAL_STREAM": journal_stream}
    daemon = Output(config, notify.path, **env)
    try:
        wait_until(lambda: daemon.has("daemon_started"), 15, "daemon_started")
    finally:
        daemon.stop()
    priorities = [priority for priority, _ in daemon.parsed()]
    assert priorities
    assert all((p is not None) == prefixed for p in priorities), daemon.lines
