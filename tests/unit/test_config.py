"""Configuration: precedence of sources and errors an operator can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import ConfigError, load_settings, parse_duration, redacted_dict


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    return path


BASE = """
[daemon]
state_dir = "/tmp/syncd-test"
[connectors.instock]
enabled = true
base_url = "https://instock.example.com/v1"
token = "toml-token"
page_size = 200
"""


def test_defaults_apply_when_file_is_silent(tmp_path: Path) -> None:
    """Keys the file does not set keep their documented defaults."""
    settings = load_settings(write(tmp_path, BASE))
    assert settings.connectors.instock.timeouts.read == 30.0
    assert settings.connectors.instock.correlation_header == "Instock-Correlation-ID"
    assert settings.outbox.max_attempts == 20


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNCD_* variables, nested with __, win over the TOML file."""
    monkeypatch.setenv("SYNCD_CONNECTORS__INSTOCK__PAGE_SIZE", "500")
    monkeypatch.setenv("SYNCD_CONNECTORS__INSTOCK__TOKEN", "env-token")
    settings = load_settings(write(tmp_path, BASE))
    assert settings.connectors.instock.page_size == 500
    assert settings.connectors.instock.secret("token") == "env-token"
    assert settings.connectors.instock.base_url == "https://instock.example.com/v1"


def test_credentials_directory_wins_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd LoadCredential files are the highest-precedence source for secrets."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "instock.token").write_text("cred-token\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("SYNCD_CONNECTORS__INSTOCK__TOKEN", "env-token")
    settings = load_settings(write(tmp_path, BASE))
    assert settings.connectors.instock.secret("token") == "cred-token"


def test_secret_file_key_reads_the_file(tmp_path: Path) -> None:
    """`token_file` reads the secret from a file so it never sits in the config."""
    secret = tmp_path / "instock.token"
    secret.write_text("file-token\n")
    text = BASE.replace('token = "toml-token"', f'token_file = "{secret}"')
    settings = load_settings(write(tmp_path, text))
    assert settings.connectors.instock.secret("token") == "file-token"


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    """A missing secret file is a config error that names the key and the path."""
    text = BASE.replace('token = "toml-token"', 'token_file = "/nonexistent/tok"')
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert "connectors.instock.token_file" in str(info.value)
    assert "/nonexistent/tok" in str(info.value)


def test_error_names_key_value_and_reason(tmp_path: Path) -> None:
    """A bad value is reported with its dotted key, the value and why it is wrong."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, BASE.replace("page_size = 200", "page_size = 0")))
    message = str(info.value)
    assert "connectors.instock.page_size = 0" in message
    assert "greater than or equal to 1" in message
    assert info.value.exit_code == 78


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    """A typo in a key is refused rather than silently ignored."""
    with pytest.raises(ConfigError, match=r"connectors\.instock\.pagesize: unknown key"):
        load_settings(write(tmp_path, BASE + "pagesize = 10\n"))


def test_plain_http_to_remote_host_is_refused_and_secret_not_shown(tmp_path: Path) -> None:
    """http:// to a non-loopback host needs an explicit opt-in, and the error hides secrets."""
    text = BASE.replace("https://instock.example.com/v1", "http://instock.example.com/v1")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert "connectors.instock.base_url = 'http://instock.example.com/v1'" in str(info.value)
    assert "toml-token" not in str(info.value)
    allowed = load_settings(write(tmp_path, text + "allow_insecure_http = true\n"))
    assert allowed.connectors.instock.base_url.startswith("http://")


def test_loopback_http_is_allowed(tmp_path: Path) -> None:
    """Local simulators on loopback may use plain http."""
    text = BASE.replace("https://instock.example.com/v1", "http://127.0.0.1:8080/v1")
    assert load_settings(write(tmp_path, text)).connectors.instock.enabled


def test_bad_secret_value_is_redacted(tmp_path: Path) -> None:
    """Even a wrongly typed secret is never echoed back."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, BASE.replace('"toml-token"', "[1, 2]")))
    assert "connectors.instock.token = **********" in str(info.value)


def test_invalid_toml_names_file_and_position(tmp_path: Path) -> None:
    """A TOML syntax error says where it is."""
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_settings(write(tmp_path, "[daemon]\nstate_dir = \n"))


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    """--config pointing at nothing is an error, not a silent run on defaults."""
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_schedule_and_durations(tmp_path: Path) -> None:
    """Schedules take durations with units or cron expressions, validated up front."""
    text = BASE + '[jobs."state.housekeeping"]\nschedule = {interval = "5m"}\n'
    assert load_settings(write(tmp_path, text)).jobs["state.housekeeping"].schedule.interval == 300
    bad = BASE + '[jobs."state.housekeeping"]\nschedule = {cron = "61 * * * *"}\n'
    with pytest.raises(ConfigError, match=r"jobs\.state\.housekeeping\.schedule\.cron"):
        load_settings(write(tmp_path, bad))
    assert parse_duration("2h") == 7200
    assert parse_duration("250ms") == 0.25
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_job_names_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment variables cannot hold dots: STATE_HOUSEKEEPING means state.housekeeping."""
    monkeypatch.setenv("SYNCD_JOBS__STATE_HOUSEKEEPING__ENABLED", "false")
    settings = load_settings(write(tmp_path, BASE))
    assert settings.jobs["state.housekeeping"].enabled is False


def test_redacted_dict_hides_every_secret(tmp_path: Path) -> None:
    """check-config output carries markers, never secret values."""
    settings = load_settings(write(tmp_path, BASE))
    text = str(redacted_dict(settings))
    assert "toml-token" not in text
    assert redacted_dict(settings)["connectors"]["instock"]["token"] == "**********"


def test_environment_override_keeps_the_rest_of_a_job_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One job key from the environment merges into the TOML section instead of replacing it."""
    text = BASE + '[jobs."state.housekeeping"]\nschedule = {interval = "5m"}\n'
    monkeypatch.setenv("SYNCD_JOBS__STATE_HOUSEKEEPING__ENABLED", "false")
    job = load_settings(write(tmp_path, text)).jobs["state.housekeeping"]
    assert job.enabled is False
    assert job.schedule.interval == 300


def test_outbox_schedule_must_be_an_interval(tmp_path: Path) -> None:
    """The sender runs on an interval; a cron there is refused, not silently ignored."""
    with pytest.raises(ConfigError, match=r"outbox\.schedule"):
        load_settings(write(tmp_path, BASE + '[outbox]\nschedule = {cron = "* * * * *"}\n'))
