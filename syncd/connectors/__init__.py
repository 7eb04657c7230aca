"""One module per remote system: its URLs, models, pagination and error mapping."""

from __future__ import annotations

from pydantic import BaseModel


def options_models() -> dict[str, type[BaseModel]]:
    """The model of `connectors.<name>.options` for each connector that reads options;
    a connector missing here reads none (config.NoOptions: every key is refused)."""
    from syncd.connectors.dsorder import DsOrderOptions
    from syncd.connectors.import_jobs import ImportJobsOptions
    from syncd.connectors.netstock.settings import NetstockOptions
    from syncd.connectors.oregon_siop import OregonSiopOptions

    return {
        "dsorder": DsOrderOptions,
        "netstock": NetstockOptions,
        "import_jobs": ImportJobsOptions,
        "oregon_siop": OregonSiopOptions,
    }
