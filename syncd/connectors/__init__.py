"""One module per remote system: its URLs, models, pagination and error mapping.

Every connector is declared once, in `CONNECTORS`: its `[connectors.<name>]` section
model, its client and the model of its `options` (check-config validates them).
`config.Connectors` holds the section models for the settings (config imports no
connector); tests/unit/test_connector_table.py keeps the two the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import BaseModel

from syncd.config import (
    ConnectorConfig,
    DSOrderConfig,
    ImportJobsConfig,
    InstockConfig,
    NetstockConfig,
    NoOptions,
    OregonSiopConfig,
)
from syncd.connectors.dsorder import DSOrderClient, DsOrderOptions
from syncd.connectors.import_jobs import ImportJobsClient, ImportJobsOptions
from syncd.connectors.instock import InstockClient
from syncd.connectors.netstock.client import NetstockClient
from syncd.connectors.netstock.settings import NetstockOptions
from syncd.connectors.oregon_siop import OregonSiopClient, OregonSiopOptions


@dataclass(frozen=True)
class Connector:
    """One remote system; `options_model` is NoOptions for one that reads no options
    (every key under `connectors.<name>.options` is then refused)."""

    config_model: type[ConnectorConfig]
    client: type
    options_model: type[BaseModel] = NoOptions


CONNECTORS: Mapping[str, Connector] = MappingProxyType(
    {
        "instock": Connector(InstockConfig, InstockClient),
        "dsorder": Connector(DSOrderConfig, DSOrderClient, DsOrderOptions),
        "netstock": Connector(NetstockConfig, NetstockClient, NetstockOptions),
        "import_jobs": Connector(ImportJobsConfig, ImportJobsClient, ImportJobsOptions),
        "oregon_siop": Connector(OregonSiopConfig, OregonSiopClient, OregonSiopOptions),
    }
)
