"""Fixtures that start `syncd run` as a real process and listen like systemd does.

`notify` binds the AF_UNIX datagram socket a unit's NOTIFY_SOCKET names and
records every message; `spawn` starts syncd with a clean environment, reads its
stdout and stderr from threads and always kills it at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Variables a developer's shell or a systemd unit may set that would change what syncd does.
_FOREIGN_ENV = (
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class NotifySocket:
    """The receiving end of sd_notify: every datagram, with the time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self._messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._messages.append((time.monotonic(), data.decode(errors="replace")))

    def timed(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._messages)

    def messages(self, since: int = 0) -> list[str]:
        return [text for _, text in self.timed()[since:]]

    def assignments(self, since: int = 0) -> list[str]:
        """Every `KEY=value` line, in the order they arrived."""
        return [line for text in self.messages(since) for line in text.splitlines()]

    def mark(self) -> int:
        """A position to read from, taken before doing something."""
        return len(self.timed())

    def wait_for(self, line: str, timeout: float = 10.0, since: int = 0) -> int:
        """Wait for a message holding `line`; returns that message's index."""

        def find() -> int | None:
            for index, text in enumerate(self.messages()):
                if index >= since and line in text.splitlines():
                    return index + 1  # 1-based so that a first message is truthy
            return None

        return wait_until(find, timeout, f"{line!r} on NOTIFY_SOCKET") - 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class SyncdProcess:
    """A running `syncd run`, its JSON log lines and stderr."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines (optionally only one event); other lines are skipped."""
        found = []
        for line in list(self.stdout_lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def wait_event(self, name: str, timeout: float = 10.0, count: int = 1) -> dict[str, Any]:
        """Wait until `count` `name` events were logged; returns the last of them."""

        def check() -> list[dict[str, Any]] | None:
            self.assert_alive_or_explain(name)
            events = self.events(name)
            return events if len(events) >= count else None

        return wait_until(check, timeout, f"{count}x {name!r} in syncd's log")[count - 1]

    def assert_alive_or_explain(self, waiting_for: str) -> None:
        if self.proc.poll() is not None:
            self.join_readers()
            pytest.fail(
                f"syncd exited with {self.proc.returncode} while waiting for {waiting_for}\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
            )

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"syncd did not exit within {timeout:g}s\nstdout:\n{self.stdout}\n"
                f"stderr:\n{self.stderr}"
            )
        self.join_readers()
        return code

    def join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.join_readers()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SYNCD_") and key not in _FOREIGN_ENV
    }
    env.update(extra)
    return env


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    # AF_UNIX paths are limited to ~108 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="syncd-notify-"))
    listener = NotifySocket(directory / "notify.sock")
    try:
        yield listener
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def write_config(tmp_path: Path, state_dir: Path) -> Callable[..., Path]:
    """Write syncd.toml: JSON logs, state in tmp_path, housekeeping every `housekeeping`."""

    def write(housekeeping: str = "1h", extra: str = "", name: str = "syncd.toml") -> Path:
        path = tmp_path / name
        path.write_text(
            f"""
[daemon]
state_dir = {json.dumps(str(state_dir))}
shutdown_timeout = "5s"

[logging]
format = "json"
level = "info"

[jobs."host.inbox"]
enabled = false  # the daemon mechanics are watched through housekeeping alone

[jobs."state.housekeeping".schedule]
interval = {json.dumps(housekeeping)}
{extra}
""",
            encoding="utf-8",
        )
        return path

    return write


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a one-shot `syncd <args>` to completion (bounded) with a clean environment."""

    def run(*args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syncd.cli", *args],
            env=clean_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def spawn(tmp_path: Path, notify: NotifySocket) -> Iterator[Callable[..., SyncdProcess]]:
    """Start `syncd <command> --config PATH`; every process is killed at teardown."""
    started: list[SyncdProcess] = []

    def start(config: Path, *, command: str = "run", **env: str) -> SyncdProcess:
        process = SyncdProcess(
            [sys.executable, "-m", "syncd.cli", command, "--config", str(config)],
            clean_env(NOTIFY_SOCKET=str(notify.path), **env),
            tmp_path,
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()
