"""CONNECTORS is the one declaration of connectors: config, clients and options agree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from pydantic import BaseModel

import syncd.connectors
from syncd.config import Connectors
from syncd.connectors import CONNECTORS


def _classes(suffix: str) -> dict[str, type]:
    """Every class named `*<suffix>` defined in a module of syncd/connectors."""
    found = {}
    for info in pkgutil.walk_packages(syncd.connectors.__path__, "syncd.connectors."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and name.endswith(suffix):
                found[f"{module.__name__}.{name}"] = cls
    return found


def test_the_table_names_every_configured_connector() -> None:
    """Each `[connectors.<name>]` section has its entry, with the same section model."""
    assert list(CONNECTORS) == list(Connectors.model_fields)
    for name, connector in CONNECTORS.items():
        assert Connectors.model_fields[name].annotation is connector.config_model, name


def test_every_client_and_options_model_is_in_the_table() -> None:
    """A connector's client or options model left out of the table would go unchecked."""
    clients = {c.client for c in CONNECTORS.values()}
    options = {c.options_model for c in CONNECTORS.values()}
    assert sorted(k for k, cls in _classes("Client").items() if cls not in clients) == []
    assert (
        sorted(
            k
            for k, cls in _classes("Options").items()
            if issubclass(cls, BaseModel) and cls not in options
        )
        == []
    )
