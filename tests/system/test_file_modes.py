"""syncd sets its own umask: started under a loose one (022), no file it makes is
world-readable, without systemd's `UMask=`.

`syncd run` is a real process started with umask 022 against the Instock simulator;
it loads a host catalog (archived), refuses an empty stock file (moved to rejects/
with its errors file) and writes inventory files to the host outbox. The state DB,
its WAL and SHM and the lock are 0600; host files syncd writes or adopts are 0640
and its directories 0750. A one-shot `syncd once` is checked the same way.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.sandbox.instock import InstockSim
from tests.system.conftest import clean_env, wait_until

pytestmark = pytest.mark.system

LOOSE = 0o022


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(directory: Path, names: tuple[str, ...]) -> dict[str, str] | None:
    try:
        return {name: oct(_mode(directory / name)) for name in names}
    except FileNotFoundError:
        return None


def _config(tmp_path: Path, ins: InstockSim) -> Path:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"""
[daemon]
state_dir = {json.dumps(str(tmp_path / "state"))}
shutdown_timeout = "5s"

[logging]
format = "json"
level = "warning"

[host]
dir = {json.dumps(str(tmp_path / "host"))}
settle_time = 0

[outbox]
schedule = {{ interval = "1s" }}

[connectors.instock]
enabled = true
base_url = "{ins.base_url}"
token = "{ins.token}"
site_id = "{ins.site_id}"
environment = "sandbox"

[jobs."host.inbox"]
schedule = {{ interval = "1s" }}

[jobs."instock.inventory"]
schedule = {{ interval = "1s" }}

[jobs."instock.articles"]
enabled = false

[jobs."instock.orders"]
enabled = false

[jobs."instock.moves"]
enabled = false
""",
        encoding="utf-8",
    )
    return config


def test_files_are_private_under_a_loose_umask(tmp_path: Path) -> None:
    """Under umask 022 the state files come out 0600 and the host files 0640 (dirs 0750)."""
    host = tmp_path / "host"
    inbox = host / "inbox"
    inbox.mkdir(parents=True)
    with InstockSim(seed=5, articles=20) as ins:
        catalog = sorted(ins.state.articles)[:5]
        articles = inbox / "articles-0001.csv"
        articles.write_text("article_id,name\n" + "".join(f"{a},Article {a}\n" for a in catalog))
        empty = inbox / "stock-0001.csv"
        empty.write_bytes(b"")
        for path in (articles, empty):
            path.chmod(0o644)  # as a host with umask 022 leaves them
        config = _config(tmp_path, ins)
        log = (tmp_path / "syncd.log").open("w")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd.cli", "run", "--config", str(config)],
            env=clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            umask=LOOSE,
        )
        try:
            outbox_files = wait_until(
                lambda: (
                    [p for p in (host / "outbox").glob("*") if not p.name.startswith(".")]
                    if daemon.poll() is None
                    else pytest.fail((tmp_path / "syncd.log").read_text())
                ),
                20,
                "a host outbox file",
            )
            errors = wait_until(
                lambda: list((host / "rejects").glob("*.errors.json")), 10, "the errors file"
            )
            state = tmp_path / "state"
            names = ("syncd.db", "syncd.db-wal", "syncd.db-shm", "syncd.lock")
            # The WAL and SHM exist while a connection is open (jobs run every second).
            private = wait_until(lambda: _modes(state, names), 10, "the state DB's WAL and SHM")
            host_files = [
                *outbox_files,
                *errors,
                host / "rejects" / empty.name,
                host / "archive" / articles.name,
            ]
            group = {str(p.relative_to(host)): oct(_mode(p)) for p in host_files}
            dirs = {
                str(p.relative_to(tmp_path)): oct(_mode(p))
                for p in (state, host / "outbox", host / "archive", host / "rejects")
            }
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
            log.close()
    assert private == dict.fromkeys(private, "0o600")
    assert group == dict.fromkeys(group, "0o640")
    assert dirs == dict.fromkeys(dirs, "0o750")


def test_syncd_once_creates_a_private_state_db_and_lock(tmp_path: Path) -> None:
    """A one-shot `syncd once` on a new state directory, under umask 022: DB and lock 0600."""
    config = tmp_path / "syncd.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n")
    done = subprocess.run(
        [sys.executable, "-m", "syncd.cli", "once", "state.housekeeping", "--config", str(config)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        umask=LOOSE,
    )
    assert done.returncode == 0, done.stderr
    state = tmp_path / "state"
    assert {p.name: oct(_mode(p)) for p in state.iterdir()} == {
        "syncd.db": "0o600",
        "syncd.lock": "0o600",
    }
    assert _mode(state) == 0o750


def test_an_older_state_db_and_lock_are_made_private_and_a_stricter_umask_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DB, WAL, SHM and lock left 0644 by an older syncd are taken down to 0600 when opened;
    a umask stricter than 027 (e.g. 077) is kept, not loosened."""
    import os
    import sqlite3

    from syncd import lifecycle
    from syncd.state import StateLock, Store

    monkeypatch.setattr(lifecycle, "_SET", {})  # what this test sets stays here

    db = tmp_path / "syncd.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")  # the WAL and SHM stay while `conn` is open
    (tmp_path / "syncd.lock").touch()
    for name in ("syncd.db", "syncd.db-wal", "syncd.db-shm", "syncd.lock"):
        (tmp_path / name).chmod(0o644)
    Store.open(db).close()
    with StateLock(tmp_path):
        pass
    modes = {p.name: oct(_mode(p)) for p in tmp_path.iterdir()}
    conn.close()
    assert modes == dict.fromkeys(modes, "0o600")
    assert len(modes) == 4

    old = os.umask(0o077)
    try:
        assert lifecycle.restrict_umask() == 0o077
        os.umask(LOOSE)
        assert lifecycle.restrict_umask() == 0o027
    finally:
        os.umask(old)
