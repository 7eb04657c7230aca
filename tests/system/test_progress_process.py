"""`syncd once` shows progress of long work at a terminal (a real pseudo-terminal) and
nothing extra when piped."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncd.state import Store
from syncd.state.store import NewIntent
from tests.system.conftest import clean_env

pytestmark = pytest.mark.system

ROWS = 3500  # three reports of 1000 rows, then the last at 3500
HEADER = "article_id,name,unit,is_serial_numbered,dim_x,dim_y,dim_z,dim_uom,attr.upc\n"


def setup(tmp_path: Path) -> Path:
    """A config with its host inbox holding a catalog of ROWS articles, settled."""
    state, host = tmp_path / "state", tmp_path / "host"
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"[daemon]\nstate_dir = {json.dumps(str(state))}\n"
        f"[host]\ndir = {json.dumps(str(host))}\nsettle_time = 0\n"
    )
    inbox = host / "inbox"
    inbox.mkdir(parents=True)
    body = "".join(f"A{i:05d},Article {i},EA,false,1,2,3,in,0{i}\n" for i in range(ROWS))
    path = inbox / "articles-1.csv"
    path.write_text(HEADER + body)
    past = time.time() - 60
    os.utime(path, (past, past))
    return config


def command(config: Path, job: str) -> list[str]:
    return [sys.executable, "-m", "syncd.cli", "once", job, "--config", str(config)]


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `args` with stdout and stderr on one pseudo-terminal; its exit status and all
    it wrote there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_inbox_load_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    """At a terminal, `once host.inbox` draws a bar for the file being read, counting rows
    to the last one; the result line follows."""
    config = setup(tmp_path)
    code, out = run_on_a_terminal(command(config, "host.inbox"), clean_env(COLUMNS="120"))
    assert code == 0, out
    assert "inbox articles-1.csv rows" in out
    assert "1000" in out
    assert f"{ROWS}" in out
    assert "host.inbox: ok" in out


def test_outbox_drain_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    """At a terminal, `once outbox.send` counts the pending intents of each destination
    it goes through against their total."""
    config = setup(tmp_path)
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        store.add_intents(
            [NewIntent("host", "ack", f"o{n}", f"k{n}", {"id": f"o{n}"}) for n in range(40)]
        )
    code, out = run_on_a_terminal(command(config, "outbox.send"), clean_env(COLUMNS="120"))
    print(out)
    assert code == 0, out
    assert "outbox.send: host pending intents gone through" in out, out
    assert "40/40" in out, out


def test_nothing_extra_when_piped(tmp_path: Path) -> None:
    """Piped, stdout is the one result line and stderr only syncd's JSON log lines: no
    bar, no carriage return, no label."""
    config = setup(tmp_path)
    done = subprocess.run(
        command(config, "host.inbox"),
        capture_output=True,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[0].startswith("host.inbox: ok ")
    assert len(done.stdout.decode().splitlines()) == 1
    assert b"\r" not in done.stdout + done.stderr
    for line in done.stderr.decode().splitlines():
        assert isinstance(json.loads(line), dict), line
    assert b"rows" not in done.stderr.replace(b'"rows', b"")
