"""Secrets never leave: remotes that echo the credential, through every secret source.

The simulators are made to quote back what a request authenticated with (the base's
`echo_*` faults: a non-JSON page, an echo the remote cut short, a JSON error, DSOrder's
`success: false` with the key in its message and warnings, a 401, a success with the key
in a warning, a non-JSON 200 that a client's excerpt would cut in half). `syncd once`
runs as a real process for each; then every place an operator or a file can see is
collected (logs, the CLI's answers, `sqlite3 .dump` of the state DB, the host directory)
and no run of 6 or more characters of any secret may appear anywhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.base import ManualClock
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from syncd.state import NewIntent, Store
from tests.system.conftest import clean_env

pytestmark = pytest.mark.system

# Generated-looking credentials (mixed case and digits), as a vendor issues them.
INSTOCK_TOKEN = "In5tKq7fQ2xZ9pL4mW8rT1vBh3Gd"
DSORDER_TOKEN = "Ds0rDh3J6kN8qS2uY5wA7cEf9Rm"
SECRETS = (INSTOCK_TOKEN, DSORDER_TOKEN)
FRAGMENT = 6
INVENTORY = "GET /v1/{site_id}/inventory"
SUBMITTED = "GET /orders/submitted"


def fragments(secret: str) -> set[str]:
    return {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


def leaks(text: str) -> list[str]:
    """Every 6-character run of a secret found in `text`."""
    return sorted({f for s in SECRETS for f in fragments(s) if f in text})


@pytest.fixture
def ins() -> Iterator[InstockSim]:
    with InstockSim(seed=3, articles=20, token=INSTOCK_TOKEN) as sim:
        yield sim


@pytest.fixture
def ds() -> Iterator[DSOrderSim]:
    with DSOrderSim(seed=3, clock=ManualClock(), token=DSORDER_TOKEN) as sim:
        yield sim


def write_config(tmp_path: Path, ins: InstockSim, ds: DSOrderSim, source: str) -> dict[str, str]:
    """The config with each token given by `source`; returns the environment to run with."""
    env = clean_env()
    secrets_lines = {"instock": "", "dsorder": ""}
    tokens = {"instock": INSTOCK_TOKEN, "dsorder": DSORDER_TOKEN}
    if source == "file":
        for name, token in tokens.items():
            path = tmp_path / f"{name}.token"
            path.write_text(token + "\n", encoding="utf-8")
            secrets_lines[name] = f"token_file = {json.dumps(str(path))}"
    elif source == "env":
        for name, token in tokens.items():
            env[f"SYNCD_CONNECTORS__{name.upper()}__TOKEN"] = token
    elif source == "credentials":
        directory = tmp_path / "credentials"
        directory.mkdir()
        for name, token in tokens.items():
            (directory / f"{name}.token").write_text(token, encoding="utf-8")
        env["CREDENTIALS_DIRECTORY"] = str(directory)
    once = '{ max_attempts = 1, initial_backoff = "10ms", max_backoff = "10ms" }'
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"""
[daemon]
state_dir = {json.dumps(str(tmp_path / "state"))}
site_timezone = "Europe/Amsterdam"

[logging]
format = "json"
level = "debug"

[host]
dir = {json.dumps(str(tmp_path / "host"))}
settle_time = 0

[outbox]
max_attempts = 5

[connectors.instock]
enabled = true
base_url = "{ins.base_url}"
site_id = "{ins.site_id}"
environment = "sandbox"
retry = {once}
{secrets_lines["instock"]}

[connectors.dsorder]
enabled = true
base_url = "{ds.base_url}"
retry = {once}
{secrets_lines["dsorder"]}
""",
        encoding="utf-8",
    )
    env["SYNCD_CONFIG"] = str(config)
    return env


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd.cli", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def collect(env: dict[str, str], tmp_path: Path, commands: list[list[str]]) -> list[str]:
    """What the read commands print, the `sqlite3 .dump` of the state DB, and every file
    syncd wrote under the host and state directories (the DB itself is in the dump)."""
    seen = []
    for args in commands:
        result = cli(env, tmp_path, *args)
        assert result.returncode == 0, result
        seen.extend([result.stdout, result.stderr])
    db_path = tmp_path / "state" / "syncd.db"
    sqlite3 = shutil.which("sqlite3")
    if sqlite3:
        dump = subprocess.run(
            [sqlite3, str(db_path), ".dump"], capture_output=True, text=True, check=True
        ).stdout
    else:  # the same text through the library
        with Store.open(db_path, migrate=False) as store:
            dump = "\n".join(store.db.conn.iterdump())
    assert "**********" in dump  # the echoes were stored, redacted
    assert "Invalid credentials" in dump or "Rejected" in dump
    seen.append(dump)
    for path in sorted((tmp_path / "host").rglob("*")) + sorted((tmp_path / "state").rglob("*")):
        if path.is_file() and not path.name.startswith("syncd.db"):
            seen.append(path.read_text(encoding="utf-8", errors="replace"))
    return seen


def test_echoed_secret_never_leaves(tmp_path: Path, ins: InstockSim, ds: DSOrderSim) -> None:
    """A credential quoted back by a remote in every way the simulators can (whole, cut by
    the remote, cut by our excerpt, in a JSON error, in DSOrder's message and warnings, in a
    401 and in a success's warning) reaches no log, CLI answer, state DB row or host file."""
    env = write_config(tmp_path, ins, ds, "file")
    seen: list[str] = []

    def once(job: str, expect: int) -> None:
        result = cli(env, tmp_path, "once", job)
        seen.extend([result.stdout, result.stderr])
        assert result.returncode == expect, result

    # Instock reads: a non-JSON page, an echo cut by the remote, a 200 that is not JSON
    # (our excerpt cuts at 80 characters, inside the secret).
    for fault in ("echo_text", "echo_cut", "echo_ok"):
        ins.faults.script(INVENTORY, [fault])
        once("instock.inventory", 1)
    # DSOrder: `success: false` with the key in message and warnings; a success warning it.
    ds.faults.script(SUBMITTED, ["echo_soft"])
    once("dsorder.pull", 1)
    ds.faults.script(SUBMITTED, ["echo_warn"])
    once("dsorder.pull", 0)
    # Pushes: refused (rejects), soft-failed (retried later), and sent with a warning.
    orders = ("900001", "900002", "900003", "900004")
    with Store.open(tmp_path / "state" / "syncd.db", migrate=False) as store:
        store.add_intents(
            NewIntent("dsorder", "close", o, f"close:{o}", {"order_id": o}) for o in orders
        )
    for order, fault in zip(
        orders, ("echo_json", "echo_soft", "echo_warn", "echo_cut"), strict=True
    ):
        ds.faults.script(f"POST /orders/{order}/close", [fault])
    once("outbox.send", 0)
    # Last, as it stops the Instock connector (and the jobs using it): a 401 quoting the token.
    ins.faults.script(INVENTORY, ["echo_auth"])
    once("instock.inventory", 1)

    fired = [r.fault for r in ins.requests + ds.requests if r.fault]
    assert len(fired) == 10, fired  # every echo was answered, so each path was exercised
    with Store.open(tmp_path / "state" / "syncd.db", migrate=False) as store:
        reject_ids = [r["id"] for r in store.list_rejects(None)]
        assert len(reject_ids) == 2
        assert store.open_alerts("auth")
        statuses = {r["order_key"]: r["status"] for r in store.query("SELECT * FROM outbox")}
        assert statuses == dict(
            zip(orders, ("rejected", "pending", "sent", "rejected"), strict=True)
        )
        assert store.scalar("SELECT count(*) FROM runs WHERE warnings LIKE '%Request carried%'")
    seen += collect(
        env,
        tmp_path,
        [
            ["status"],
            ["rejects", "list", "--status", "all"],
            ["rejects", "show", str(reject_ids[0])],
            ["alerts", "list", "--all"],
            ["outbox", "list", "--status", "all", "--json"],
        ],
    )
    assert leaks("\n".join(seen)) == []


@pytest.mark.parametrize("source", ["env", "credentials"])
def test_echoed_secret_from_env_or_credentials_never_leaves(
    tmp_path: Path, ins: InstockSim, ds: DSOrderSim, source: str
) -> None:
    """The same with the tokens from SYNCD_* variables or $CREDENTIALS_DIRECTORY files:
    the redactor knows them whatever their source."""
    env = write_config(tmp_path, ins, ds, source)
    seen: list[str] = []
    ins.faults.script(INVENTORY, ["echo_cut"])
    ds.faults.script(SUBMITTED, ["echo_soft"])
    for job in ("instock.inventory", "dsorder.pull"):
        result = cli(env, tmp_path, "once", job)
        seen.extend([result.stdout, result.stderr])
        assert result.returncode == 1, result
    assert [r.fault for r in ins.requests + ds.requests if r.fault] == ["echo_cut", "echo_soft"]
    seen += collect(env, tmp_path, [["status"]])
    assert leaks("\n".join(seen)) == []
