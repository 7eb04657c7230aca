"""The CLI's exit statuses follow sysexits, `--config` goes before or after the command,
the example config ships with the package, completion works (in-process CLI)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli import main
from syncd.state import StateLock, Store
from syncd.state.store import NewReject

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str | None]:
    """None of the caller's SYNCD_* or systemd variables, plus `extra`."""
    foreign = [k for k in os.environ if k.startswith(("SYNCD_", "_SYNCD"))]
    return {**dict.fromkeys([*foreign, "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"]), **extra}


def invoke(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner(env=clean_env(**(env or {}))).invoke(main, list(args), input=stdin)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose state DB holds one host reject, one dropped job reject, an open
    alert and a checkpoint."""
    path = tmp_path / "syncd.toml"
    path.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n")
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        store.add_rejects([NewReject("host:articles", "articles.csv:7", "bad qty", field="qty")])
        store.add_rejects([NewReject("instock:articles", "article A1", "serial-numbered")])
        store.drop_reject(2)
        store.open_alert("auth", "instock: credentials refused", subject="instock")
        store.set_checkpoint("instock.inventory", "2026-12-01T00:00:00Z")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["status", "--no-such-option"],
        ["rejects", "list", "--limit", "many"],
        ["rejects", "list", "--status", "nonsense"],
        ["rejects", "show"],
        ["once", "no.such.job"],
    ],
    ids=str,
)
def test_bad_usage_exits_64(config: Path, args: list[str]) -> None:
    """An unknown command, option or job and a bad value are usage errors: 64 (EX_USAGE),
    not click's 2, whatever part of the command line is wrong."""
    result = invoke(*args, "--config", str(config))
    assert result.exit_code == 64, result.output


def test_unknown_job_is_a_usage_error_before_the_config_is_read(tmp_path: Path) -> None:
    """`syncd once typo` says which jobs exist, even when no config file is there yet."""
    result = invoke("once", "host.inbx", "--config", str(tmp_path / "missing.toml"))
    assert result.exit_code == 64, result.output
    assert "unknown job 'host.inbx'" in result.output
    assert "host.inbox" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["rejects", "show", "999"],
        ["rejects", "retry", "999"],
        ["rejects", "drop", "999"],
        ["alerts", "resolve", "999"],
        ["checkpoints", "reset", "no.such.stream", "--yes"],
        ["orders", "release", "NO-SUCH-ORDER", "--cancel"],
    ],
    ids=str,
)
def test_a_named_thing_not_found_exits_66(config: Path, args: list[str]) -> None:
    """A reject, alert, checkpoint or order that does not exist is 66 (EX_NOINPUT): 75
    would tell a script to try again, and it would never be found."""
    result = invoke(*args, "--config", str(config))
    assert result.exit_code == 66, result.output
    assert "no " in result.output


def test_no_state_db_yet_exits_66(tmp_path: Path) -> None:
    """Listing from a state DB that was never created names its path and exits 66."""
    path = tmp_path / "syncd.toml"
    path.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'nothing'))}\n")
    result = invoke("rejects", "list", "--config", str(path))
    assert result.exit_code == 66, result.output
    assert str(tmp_path / "nothing" / "syncd.db") in result.output


def test_invalid_config_exits_78(tmp_path: Path) -> None:
    """A config a command cannot use is 78 (EX_CONFIG), for any command that reads it."""
    path = tmp_path / "syncd.toml"
    path.write_text("[outbox]\nbatch_size = -1\n")
    for args in (["status"], ["jobs"], ["rejects", "list"], ["check-config"]):
        result = invoke(*args, "--config", str(path))
        assert result.exit_code == 78, (args, result.output)
        assert "outbox.batch_size" in result.output


def test_locked_by_the_daemon_exits_75(config: Path, tmp_path: Path) -> None:
    """`syncd once` on a state directory another syncd holds is 75 (EX_TEMPFAIL): it will
    work once that one stops, and the message says to send it SIGUSR1 instead."""
    lock = StateLock(tmp_path / "state")
    lock.acquire()
    try:
        result = invoke("once", "state.housekeeping", "--config", str(config))
    finally:
        lock.release()
    assert result.exit_code == 75, result.output
    assert "SIGUSR1" in result.output


def test_a_refused_operation_exits_1(config: Path) -> None:
    """Retrying a dropped reject or a host row is refused (1): trying again will not help."""
    dropped = invoke("rejects", "retry", "2", "--config", str(config))
    assert dropped.exit_code == 1, dropped.output
    assert "dropped, not open" in dropped.output
    host_row = invoke("rejects", "retry", "1", "--config", str(config))
    assert host_row.exit_code == 1, host_row.output
    assert "corrected file" in host_row.output


def test_declining_a_confirmation_exits_1(config: Path) -> None:
    """Answering no to `checkpoints reset` changes nothing and exits 1."""
    result = invoke(
        "checkpoints", "reset", "instock.inventory", "--config", str(config), stdin="n\n"
    )
    assert result.exit_code == 1, result.output
    listed = invoke("checkpoints", "list", "--json", "--config", str(config))
    assert json.loads(listed.output)[0]["value"] == "2026-12-01T00:00:00Z"


def test_config_goes_before_or_after_the_command(config: Path, tmp_path: Path) -> None:
    """`--config` works before the command, after it, and from $SYNCD_CONFIG; the one
    after the command wins over the one before it, which wins over the environment."""
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'void'))}\n")
    for args, env in [
        (["--config", str(config), "alerts", "list", "--json"], {}),
        (["alerts", "list", "--json", "--config", str(config)], {}),
        (["alerts", "list", "--json"], {"SYNCD_CONFIG": str(config)}),
        (["--config", str(elsewhere), "alerts", "list", "--json", "--config", str(config)], {}),
        (["--config", str(config), "alerts", "list", "--json"], {"SYNCD_CONFIG": str(elsewhere)}),
    ]:
        result = invoke(*args, env=env)
        assert result.exit_code == 0, (args, result.output)
        assert json.loads(result.output)[0]["kind"] == "auth"
    missing = invoke("--config", str(elsewhere), "alerts", "list")
    assert missing.exit_code == 66, missing.output


def test_config_example_is_the_installed_annotated_example(tmp_path: Path) -> None:
    """`syncd config example` prints the file the repository documents, from the installed
    package, and what it prints passes check-config as it stands."""
    result = invoke("config", "example")
    assert result.exit_code == 0, result.output
    assert result.output == (ROOT / "config" / "syncd.example.toml").read_text()
    example = tmp_path / "syncd.toml"
    example.write_text(result.output)
    checked = invoke(
        "check-config",
        "--config",
        str(example),
        env={
            "SYNCD_DAEMON__STATE_DIR": str(tmp_path / "state"),
            "SYNCD_HOST__DIR": str(tmp_path / "host"),
        },
    )
    assert checked.exit_code == 0, checked.output
    assert "configuration OK" in checked.output


def test_shell_completion_script_and_job_names() -> None:
    """`_SYNCD_COMPLETE=bash_source syncd` prints a completion script, and `syncd once
    <TAB>` completes job names."""
    runner = CliRunner(env=clean_env(_SYNCD_COMPLETE="bash_source"))
    script = runner.invoke(main, [], prog_name="syncd")
    assert script.exit_code == 0, script.output
    assert "_syncd_completion" in script.output
    runner = CliRunner(
        env=clean_env(
            _SYNCD_COMPLETE="bash_complete", COMP_WORDS="syncd once host.", COMP_CWORD="2"
        )
    )
    completed = runner.invoke(main, [], prog_name="syncd")
    assert completed.exit_code == 0, completed.output
    assert "plain,host.inbox" in completed.output.splitlines()


def test_help_carries_the_exit_statuses_and_completion() -> None:
    """`syncd --help` is enough to work from without a man page: exit statuses,
    completion, the example config; every command's help text is printed whole."""
    result = invoke("--help")
    assert result.exit_code == 0
    for text in ("64", "66", "75", "78", "_SYNCD_COMPLETE=bash_source", "config example"):
        assert text in result.output
    commands = result.output.split("Commands:")[1].split("Exit statuses")[0]
    assert not [line for line in commands.splitlines() if line.endswith("...")], commands


def test_demo_hints_name_the_syncd_that_ran(tmp_path: Path) -> None:
    """The demo's `syncd status` hint names the syncd script it ran as (the venv is not
    activated), else the one beside the Python, else `python -m syncd.cli`."""
    from syncd.demo import syncd_command

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "syncd"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    python = bin_dir / "python"
    assert syncd_command(str(script), sys.executable) == str(script.resolve())
    assert syncd_command("/somewhere/syncd/cli/__main__.py", str(python)) == str(script)
    assert syncd_command("-m", "/usr/bin/python3.11") == "/usr/bin/python3.11 -m syncd.cli"


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],
        ["status"],
        ["rejects", "list", "--status", "all"],
        ["rejects", "show", "1"],
        ["outbox", "list"],
        ["alerts", "list"],
        ["checkpoints", "list"],
    ],
    ids=str,
)
def test_every_listing_verb_prints_json(config: Path, args: list[str]) -> None:
    """Every listing verb takes --json and prints JSON only on stdout, its times as
    ISO-8601 UTC text."""
    result = CliRunner(env=clean_env()).invoke(main, [*args, "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data or data == []
    times = [v for v in _leaves(data) if isinstance(v, str) and v[:2] == "20" and "T" in v]
    assert all(t.endswith("Z") for t in times), times


def _leaves(data: object) -> list[object]:
    if isinstance(data, dict):
        return [leaf for v in data.values() for leaf in _leaves(v)]
    if isinstance(data, list):
        return [leaf for v in data for leaf in _leaves(v)]
    return [data]
