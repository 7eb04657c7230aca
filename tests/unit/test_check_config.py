"""check-config refuses what would fail every run, and shows nothing secret (in-process CLI)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli import main

INSTOCK_TOKEN = "In5tKq7fQ2xZ9pL4mW8rT1vBh3Gd"
DSORDER_TOKEN = "Ds0rDh3J6kN8qS2uY5wA7cEf9Rm"


def leaks(text: str) -> list[str]:
    """Every 6-character run of a secret found in `text`."""
    return sorted(
        {s[i : i + 6] for s in (INSTOCK_TOKEN, DSORDER_TOKEN) for i in range(len(s) - 5)}
        & {text[i : i + 6] for i in range(len(text) - 5)}
    )


def write_config(tmp_path: Path, body: str) -> Path:
    """`syncd.toml` in `tmp_path`: a `[daemon]` section with its state_dir under `tmp_path`,
    then `body`."""
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n{body}", encoding="utf-8"
    )
    return config


def check_config(config: Path, *command: str) -> Result:
    """`syncd check-config` (or another command) with none of the caller's SYNCD_* or
    systemd variables."""
    foreign = [k for k in os.environ if k.startswith("SYNCD_")]
    env = dict.fromkeys([*foreign, "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"])
    args = [*(command or ["check-config"]), "--config", str(config)]
    return CliRunner(env=env).invoke(main, args)


def test_check_config_hides_url_credentials_and_known_secrets(tmp_path: Path) -> None:
    """check-config masks a password in base_url, secret-looking query parameters and any
    known secret value repeated elsewhere (an option), but keeps the rest readable."""
    config = write_config(
        tmp_path,
        f"""
[connectors.instock]
enabled = true
base_url = "https://ops:{DSORDER_TOKEN}@instock.example.com/v1?token={INSTOCK_TOKEN}&page=2"
token = "{INSTOCK_TOKEN}"

[connectors.netstock]
base_url = "https://netstock.example.com/api?api_key=Zx81Lq0Wmv7Rt"
options = {{ customer_identifier = "{INSTOCK_TOKEN}" }}
""",
    )
    result = check_config(config)
    assert result.exit_code == 0, result.output
    out = result.stdout + result.stderr
    assert leaks(out) == []
    assert "Zx81Lq0Wmv7Rt" not in out
    assert "https://ops:**********@instock.example.com/v1?token=**********&page=2" in out
    assert 'connectors.netstock.options.customer_identifier = "**********"' in out
    as_json = check_config(config, "check-config", "--json")
    data = json.loads(as_json.stdout)  # redaction never breaks the JSON
    assert data["connectors"]["instock"]["token"] == "**********"
    assert data["connectors"]["import_jobs"]["api_key"] is None
    assert leaks(as_json.stdout) == []


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        pytest.param('token = ""', "connectors.instock.token", "required", id="empty-token"),
        pytest.param("", "connectors.instock.token", "required", id="missing-token"),
        pytest.param('token = "  \\n"', "connectors.instock.token", "required", id="blank"),
        pytest.param(
            'token = "abc\\u0000def"', "connectors.instock.token", "control character", id="nul"
        ),
        pytest.param(
            'token = "t0k3nValue"\noptions = { page_sise = 10 }',
            "connectors.instock.options.page_sise",
            "unknown key",
            id="instock-option-typo",
        ),
    ],
)
def test_check_config_refuses_what_would_fail_every_run(
    tmp_path: Path, toml: str, key: str, reason: str
) -> None:
    """An enabled connector without a usable secret, or a misspelt option, exits 78 naming
    the key, instead of every job failing later with `Illegal header value`."""
    config = write_config(
        tmp_path,
        f"""
[connectors.instock]
enabled = true
base_url = "http://127.0.0.1:9/v1"
{toml}
""",
    )
    result = check_config(config)
    assert result.exit_code == 78, result.output
    assert key in result.stderr
    assert reason in result.stderr


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param("[host.options]\nbatch_sise = 10", "host.options.batch_sise", id="host"),
        pytest.param(
            "[connectors.oregon_siop.options]\nmax_round = 3",
            "connectors.oregon_siop.options.max_round",
            id="oregon",
        ),
        pytest.param(
            "[connectors.netstock.options]\nchunksize = 3",
            "connectors.netstock.options.chunksize",
            id="netstock",
        ),
        pytest.param(
            '[jobs."host.inbox".options]\nsettle = 3',
            "jobs.host.inbox.options.settle",
            id="job-without-options",
        ),
    ],
)
def test_check_config_refuses_misspelt_options(tmp_path: Path, section: str, key: str) -> None:
    """A misspelt key in the host's, a (disabled) connector's or a job's options is refused
    by name, also where the job or connector reads no options at all."""
    config = write_config(tmp_path, f"{section}\n")
    result = check_config(config)
    assert result.exit_code == 78, result.output
    assert key in result.stderr
    assert "unknown key" in result.stderr


@pytest.mark.parametrize(
    ("connector", "instead"),
    [
        ("dsorder", "not paged"),
        ("netstock", "not paged"),
        ("import_jobs", 'jobs."planning.import".options.batch_size'),
    ],
)
def test_page_size_is_refused_where_it_changes_nothing(
    tmp_path: Path, connector: str, instead: str
) -> None:
    """`page_size` on a connector that does not page (once accepted and ignored) is refused,
    naming the key and what to set instead; where it works it is still accepted."""
    config = write_config(tmp_path, f"[connectors.{connector}]\npage_size = 50\n")
    result = check_config(config)
    assert result.exit_code == 78, result.output
    assert f"connectors.{connector}.page_size = 50: not used by this connector" in result.stderr
    assert instead in result.stderr
    write_config(
        tmp_path, "[connectors.instock]\npage_size = 50\n[connectors.oregon_siop]\npage_size = 50\n"
    )
    assert check_config(config).exit_code == 0


@pytest.mark.parametrize("command", ["check-config", "once"])
@pytest.mark.parametrize("where", ["under-a-file", "read-only"])
def test_check_config_refuses_an_unwritable_state_dir(
    tmp_path: Path, where: str, command: str
) -> None:
    """A state directory syncd could not create or write is refused with exit 78, by name
    (by `once` too, before it takes the lock)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    # /proc takes no new files, whoever asks (root included): a read-only mount.
    state_dir = blocker / "state" if where == "under-a-file" else Path("/proc/syncd-state")
    config = tmp_path / "syncd.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(state_dir))}\n", encoding="utf-8")
    args = ["once", "state.housekeeping"] if command == "once" else ["check-config"]
    result = check_config(config, *args)
    assert result.exit_code == 78, result.output
    assert "daemon.state_dir" in result.stderr


@pytest.mark.parametrize("token", ['" "', '""', None])
def test_a_blank_or_missing_token_names_the_variable_and_credential_to_set(
    tmp_path: Path, token: str | None
) -> None:
    """A blank token reads as missing (not as a masked value that looks set), and the
    error names the connector's own variable and credential file, not a placeholder."""
    line = f"token = {token}\n" if token is not None else ""
    config = write_config(
        tmp_path,
        f'[connectors.instock]\nenabled = true\nbase_url = "https://i.example.com/v1"\n{line}',
    )
    result = check_config(config)
    assert result.exit_code == 78, result.output
    assert "connectors.instock.token: required (and non-empty)" in result.stderr
    assert "SYNCD_CONNECTORS__INSTOCK__TOKEN" in result.stderr
    assert "systemd credential (instock.token)" in result.stderr
    assert "<" not in result.stderr


def test_a_refused_url_is_quoted_without_its_credentials(tmp_path: Path) -> None:
    """The error naming a bad base_url quotes it with userinfo and `?token=` masked."""
    config = write_config(
        tmp_path,
        f"""
[connectors.instock]
enabled = true
token = "{INSTOCK_TOKEN}"
base_url = "http://ops:Pw9Xq1zz@instock.example.com/v1?token={DSORDER_TOKEN}"
""",
    )
    result = check_config(config)
    assert result.exit_code == 78, result.output
    assert "connectors.instock.base_url" in result.stderr
    assert "http://ops:**********@instock.example.com/v1?token=**********" in result.stderr
    assert "Pw9Xq1zz" not in result.output
    assert leaks(result.output) == []


@pytest.mark.parametrize("name", ["syncd.example.toml", "demo.toml"])
def test_the_shipped_configs_pass_check_config(tmp_path: Path, name: str) -> None:
    """The example an operator starts from and the demo's config name only keys syncd
    reads (an option a job or connector gained must be known to check-config too)."""
    root = Path(__file__).resolve().parents[2]
    config = root / ("config" if name.startswith("syncd") else "syncd/defaults") / name
    foreign = [k for k in os.environ if k.startswith("SYNCD_")]
    env = {
        **dict.fromkeys([*foreign, "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"]),
        "SYNCD_DAEMON__STATE_DIR": str(tmp_path / "state"),
        "SYNCD_HOST__DIR": str(tmp_path / "host"),
    }
    result = CliRunner(env=env).invoke(main, ["check-config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "configuration OK" in result.output
