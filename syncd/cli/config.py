"""`syncd check-config` and `syncd config example`: the configuration."""

from __future__ import annotations

import json
from pathlib import Path

import click

from syncd.cli.common import (
    config_option,
    echo,
    echo_json,
    handle_errors,
    json_option,
    settings_for,
)
from syncd.config import Settings, flatten, redacted_dict, refuse_unwritable


@click.command("check-config")
@config_option
@json_option
@handle_errors
def check_config(config_path: Path | None, as_json: bool) -> None:
    """Validate the config; print it with secrets redacted.

    Also refused (78): an enabled connector without its secret, an unknown key in
    any `options`, a state (or host) directory syncd could not write.
    """
    settings = settings_for(config_path, required=True)
    refuse_unwritable(settings)
    data = redacted_dict(settings)
    if as_json:
        echo_json(data)
    else:
        echo(f"# effective configuration from {Settings.source_path or 'defaults'}")
        for key, value in flatten(data):
            echo(f"{key} = {json.dumps(value, default=str)}")
    from syncd.connectors.netstock.settings import config_notes

    for note in config_notes(settings.connectors.netstock):  # which endpoint map, unverified
        echo(note, err=as_json)
    echo("configuration OK", err=True)


@click.group("config")
def config_group() -> None:
    """The annotated example configuration."""


@config_group.command("example")
def config_example() -> None:
    """Print the annotated example configuration: every key, its default and its unit.

    It is installed with syncd (the same text as config/syncd.example.toml):
    `syncd config example > /etc/syncd/syncd.toml`, then fill in the secrets.
    """
    from importlib import resources

    click.echo((resources.files("syncd") / "defaults" / "syncd.example.toml").read_text(), nl=False)
