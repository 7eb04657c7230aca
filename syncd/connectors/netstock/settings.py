"""What `connectors.netstock` configures: options, the model -> endpoint map, checked once.

**Model -> endpoint map.** `/model/start` takes a model name and the data goes to
`/import/<endpoint>`; the document's list has copy-paste mistakes, so the map is
`DEFAULT_MODEL_ENDPOINTS`, merged with `connectors.netstock.options["model_endpoints"]`
(values may be given as `stock_by_location`, `/import/stock_by_location` or
`import/stock_by_location`):

- `stocks` -> `stock_by_location`, `pohist` -> `po_hist`, `suppersessions` (sic, the
  model name as the document spells it) -> `suppressions` (sic, the URL as printed): the
  model names and the URLs differ, the URLs are taken as printed.
- `master` -> `master`: the document shows Master at `/import/suppliers`, a copy of the
  Suppliers section (its body is the item master's); `/import/master` follows every other
  section (`/import/<model>`).
- `transfers` -> `transfers`: the document shows Transfers at `/import/co` with the customer
  orders' body, again a copy; `/import/transfers` follows the same rule.
- `sales` -> `sales`; `/import/sales_legacy` (the period-based body) is selected with
  `model_endpoints = {sales = "sales_legacy"}`.
- Custom models `ut_*` are allowed by name; their endpoint is the model name unless mapped.
  Any other unknown model name is refused before a request is sent.

The two corrections (`master`, `transfers`) are guesses from a pattern the document breaks
three times: they are UNVERIFIED (`UNVERIFIED_ENDPOINTS`; `syncd check-config` lists them).
`endpoint_map = "document"` starts from the URLs exactly as printed instead
(`DOCUMENT_MODEL_ENDPOINTS`: master -> `suppliers`, transfers -> `co`); `model_endpoints`
overrides any entry of either.

**Options** (`connectors.netstock.options`, unknown keys refused): `scope`,
`customer_identifier` (default: `username`, which the document calls the customer
identifier), `token_url`, `token_renew_margin` (a duration), `chunk_size` (lines per import
post, default 1000), `endpoint_map` and `model_endpoints`. `username`, `password` and `client_id` are
required.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from syncd.errors import ConfigError
from syncd.sections import ConnectorConfig, is_loopback, parse_duration

NAME: Final = "netstock"
TOKEN_PATH: Final = "/application/o/token/"  # noqa: S105 - a URL path, not a secret
GRANT_TYPE: Final = "client_credentials"
DEFAULT_RENEW_MARGIN: Final = 60.0
DEFAULT_CHUNK_SIZE: Final = 1000
CUSTOM_MODEL_PREFIX: Final = "ut_"

DEFAULT_MODEL_ENDPOINTS: Final[Mapping[str, str]] = {
    "locations": "locations",
    "stocks": "stock_by_location",
    "suppliers": "suppliers",
    "master": "master",
    "groups": "groups",
    "sales": "sales",
    "po": "po",
    "co": "co",
    "transfers": "transfers",
    "pohist": "po_hist",
    "bom": "bom",
    "suppersessions": "suppressions",
}

DOCUMENT_MODEL_ENDPOINTS: Final[Mapping[str, str]] = {
    **DEFAULT_MODEL_ENDPOINTS,
    "master": "suppliers",  # as printed in the Master section
    "transfers": "co",  # as printed in the Transfers section
}

ENDPOINT_MAPS: Final[Mapping[str, Mapping[str, str]]] = {
    "corrected": DEFAULT_MODEL_ENDPOINTS,
    "document": DOCUMENT_MODEL_ENDPOINTS,
}

UNVERIFIED_ENDPOINTS: Final[Mapping[str, str]] = {
    "master": "the document prints /import/suppliers (the Suppliers URL, with the item "
    "master's body); /import/master is a guess from the /import/<model> pattern",
    "transfers": "the document prints /import/co (the Customer Orders URL and body); "
    "/import/transfers is a guess from the /import/<model> pattern",
}

MODEL_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_ENDPOINT_RE: Final = re.compile(r"^[A-Za-z0-9_]+$")


class NetstockOptions(BaseModel):
    """`connectors.netstock.options`, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str | None = None
    customer_identifier: str | None = None
    token_url: str = TOKEN_PATH
    token_renew_margin: float = DEFAULT_RENEW_MARGIN
    chunk_size: int = Field(DEFAULT_CHUNK_SIZE, ge=1, le=100_000)
    endpoint_map: Literal["corrected", "document"] = "corrected"
    model_endpoints: dict[str, str] = Field(default_factory=dict)

    @field_validator("token_renew_margin", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


def configured_chunk_size(config: ConnectorConfig) -> int:
    """`options.chunk_size` of a Netstock connector config, without checking the rest."""
    try:
        return NetstockOptions.model_validate(config.options).chunk_size
    except ValidationError:
        return DEFAULT_CHUNK_SIZE


def model_endpoint_map(
    overrides: Mapping[str, Any] | None = None, base: str = "corrected"
) -> dict[str, str]:
    """The `base` map (ENDPOINT_MAPS) with `overrides` on top; ValueError on a bad entry."""
    merged = dict(ENDPOINT_MAPS[base])
    for model, endpoint in (overrides or {}).items():
        if not isinstance(model, str) or not MODEL_NAME_RE.fullmatch(model):
            raise ValueError(f"model_endpoints: {model!r} is not a model name")
        if not isinstance(endpoint, str):
            raise ValueError(f"model_endpoints.{model}: {endpoint!r} is not an endpoint name")
        name = endpoint.strip().strip("/").removeprefix("import/")
        if not _ENDPOINT_RE.fullmatch(name):
            raise ValueError(
                f"model_endpoints.{model}: {endpoint!r} is not an endpoint name "
                "(e.g. 'stock_by_location' or '/import/stock_by_location')"
            )
        merged[model] = name
    return merged


@dataclass(frozen=True)
class NetstockSettings:
    """What the client needs from `connectors.netstock`, checked once."""

    customer_identifier: str
    username: str
    client_id: str
    token_url: str
    scope: str | None
    renew_margin: float
    chunk_size: int
    model_endpoints: Mapping[str, str]

    @classmethod
    def from_config(cls, config: ConnectorConfig) -> NetstockSettings:
        problems: list[str] = []
        try:
            options = NetstockOptions.model_validate(config.options)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                key = ".".join(str(p) for p in error["loc"])
                problems.append(f"connectors.netstock.options.{key}: {error['msg']}")
            options = NetstockOptions()
        try:
            endpoints = model_endpoint_map(options.model_endpoints, options.endpoint_map)
        except ValueError as exc:
            problems.append(f"connectors.netstock.options.{exc}")
            endpoints = dict(DEFAULT_MODEL_ENDPOINTS)
        if not config.username:
            problems.append("connectors.netstock.username: required (the customer identifier)")
        if not config.client_id:
            problems.append("connectors.netstock.client_id: required")
        if not config.secret("password"):
            problems.append("connectors.netstock.password: required")
        token_url = options.token_url.strip()
        parts = urlsplit(token_url)
        if parts.scheme:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(
                    f"connectors.netstock.options.token_url: {token_url!r} is not a URL"
                )
            elif parts.scheme == "http" and not (
                is_loopback(parts.hostname) or config.allow_insecure_http
            ):
                problems.append(
                    "connectors.netstock.options.token_url: plain http to a non-loopback host "
                    "is refused; use https"
                )
        elif not token_url.startswith("/"):
            token_url = "/" + token_url
        if problems:
            raise _settings_error(problems)
        return cls(
            customer_identifier=options.customer_identifier or str(config.username),
            username=str(config.username),
            client_id=str(config.client_id),
            token_url=token_url,
            scope=options.scope,
            renew_margin=options.token_renew_margin,
            chunk_size=options.chunk_size,
            model_endpoints=endpoints,
        )


def _settings_error(problems: list[str]) -> ConfigError:
    return ConfigError("invalid Netstock connector settings:\n  " + "\n  ".join(problems), problems)


@dataclass(frozen=True)
class EndpointEntry:
    """One model's endpoint in the map in use, and where it comes from."""

    model: str
    endpoint: str
    source: str  # "document" (as printed) | "corrected" (a guess) | "override"
    note: str = ""

    @property
    def unverified(self) -> bool:
        return self.source == "corrected"


def endpoint_report(options: Mapping[str, Any]) -> tuple[str, list[EndpointEntry]]:
    """The map `connectors.netstock.options` selects, entry by entry (ConfigError if bad)."""
    try:
        parsed = NetstockOptions.model_validate(options)
        merged = model_endpoint_map(parsed.model_endpoints, parsed.endpoint_map)
    except ValidationError as exc:
        problems = [
            f"connectors.netstock.options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise _settings_error(problems) from None
    except ValueError as exc:
        raise _settings_error([f"connectors.netstock.options.{exc}"]) from None
    entries = []
    for model, endpoint in merged.items():
        if model in parsed.model_endpoints:
            entries.append(EndpointEntry(model, endpoint, "override"))
        elif endpoint != DOCUMENT_MODEL_ENDPOINTS.get(model, endpoint):
            entries.append(EndpointEntry(model, endpoint, "corrected", UNVERIFIED_ENDPOINTS[model]))
        else:
            entries.append(EndpointEntry(model, endpoint, "document"))
    return parsed.endpoint_map, entries


def config_notes(config: ConnectorConfig) -> list[str]:
    """What `syncd check-config` says about the Netstock endpoint map: which map is in use
    and which of its entries are unverified guesses ([] when the connector is disabled)."""
    if not config.enabled:
        return []
    name, entries = endpoint_report(config.options)
    notes = [
        f"# netstock model -> endpoint map: {name!r} (connectors.netstock.options.endpoint_map"
        ' = "corrected" | "document"; entries overridable in options.model_endpoints)'
    ]
    for entry in entries:
        line = f"#   {entry.model} -> /import/{entry.endpoint} ({entry.source})"
        if entry.unverified:
            line += f" UNVERIFIED: {entry.note}"
        notes.append(line)
    return notes
