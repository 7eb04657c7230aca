"""A connector is declared once, as a field of `Connectors`: its section model (defined in
its connector module) names the client and the options model, and CONNECTORS follows."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from pydantic import BaseModel

import syncd.connectors
from syncd.config import CONNECTORS, Connectors, Settings, options_problems
from syncd.sections import ConnectorConfig, NoOptions


def _classes(suffix: str) -> dict[str, type]:
    """Every class named `*<suffix>` defined in a module of syncd/connectors."""
    found = {}
    for info in pkgutil.walk_packages(syncd.connectors.__path__, "syncd.connectors."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and name.endswith(suffix):
                found[f"{module.__name__}.{name}"] = cls
    return found


def test_the_table_is_read_off_the_config_sections() -> None:
    """Each `[connectors.<name>]` section has its entry, with the same section model."""
    assert list(CONNECTORS) == list(Connectors.model_fields)
    for name, model in CONNECTORS.items():
        assert Connectors.model_fields[name].annotation is model, name
        assert isinstance(getattr(Settings().connectors, name), model), name


def test_every_section_model_is_a_configured_connector() -> None:
    """A section model a connector module defines but `Connectors` lacks could never be
    configured: refused here."""
    sections = {
        key: cls
        for key, cls in _classes("Config").items()
        if issubclass(cls, ConnectorConfig) and "client" in vars(cls)
    }
    assert sorted(k for k, cls in sections.items() if cls not in CONNECTORS.values()) == []
    assert len(sections) == len(CONNECTORS)


def test_each_section_names_its_own_client() -> None:
    """The client a section configures is defined next to it, in the same module."""
    for name, model in CONNECTORS.items():
        assert "client" in vars(model), f"{name}: its section model declares no client"
        assert model.client.__module__ == model.__module__, name


def test_every_client_and_options_model_is_in_the_table() -> None:
    """A connector's client or options model left out of the table would go unchecked."""
    clients = {model.client for model in CONNECTORS.values()}
    options = {model.options_model for model in CONNECTORS.values()}
    assert sorted(k for k, cls in _classes("Client").items() if cls not in clients) == []
    assert (
        sorted(
            k
            for k, cls in _classes("Options").items()
            if issubclass(cls, BaseModel) and cls not in options
        )
        == []
    )


def test_a_connector_without_options_refuses_every_key() -> None:
    """`options_model` defaults to NoOptions: a key under `connectors.instock.options` is a
    misspelling, named by check-config."""
    assert CONNECTORS["instock"].options_model is NoOptions
    problems = options_problems("connectors.instock", {"pagesize": 5}, NoOptions)
    assert problems == [
        "connectors.instock.options.pagesize: unknown key "
        "(check the spelling against syncd.example.toml)"
    ]


def test_each_connector_module_names_itself_as_configured() -> None:
    """A connector module's `NAME` (used in its logs and errors) is its `Connectors`
    field: one name per connector, spelt once as a key."""
    for name, model in CONNECTORS.items():
        assert name == importlib.import_module(model.__module__).NAME, model.__module__


def test_every_job_names_configured_connectors() -> None:
    """A job's `connectors` are configured connectors (its schedule and switch read them)."""
    from syncd.jobs import JOBS

    unknown = sorted((s.name, c) for s in JOBS for c in s.connectors if c not in CONNECTORS)
    assert unknown == []
