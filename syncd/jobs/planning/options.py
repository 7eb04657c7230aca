"""The options of `planning.import` (`[jobs."planning.import".options]`) and the endpoint
sets they choose from."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.config import Duration
from syncd.connectors.import_jobs import KINDS

# The document names a unique (catalog, suppliers) or idempotent (purchase orders) key; an
# inventory level is a state, replaced. Orders and weekly demand may be added again.
UPSERT_ENDPOINTS: Final = ("catalog", "suppliers", "inventory", "purchase-orders")
# Reference data first, so that what later rows name has been imported already.
ORDER: Final = ("catalog", "suppliers", "inventory", "purchase-orders", "orders", "demand-history")
CLOSING: Final = ("purchase-orders", "orders")
"""Endpoints whose rows leave the open set: the last accepted row is kept (payload) so that
it can be sent once more, closed."""


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[str] = Field(
        default_factory=lambda: list(ORDER), description="endpoints to import"
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="rows per import job")
    jobs_in_flight: int = Field(
        4, ge=1, le=16, description="import jobs submitted and not yet finished, at most"
    )
    demand_weeks_back: int = Field(52, ge=0, le=520, description="closed weeks of demand sent")
    include_open_week: bool = Field(
        False,
        description="also send the current, open week (re-sent each run it grows: only "
        "for an API that replaces a week, never one that adds into it)",
    )
    job_timeout: Duration = Field(600.0, description="how long one run polls one job")
    site_location: str = Field("SITE", min_length=1, description="location code for host ''")
    reserved_from_instock: bool = Field(
        True,
        description="site-level inventory quantityReserved from the Instock mirror when the "
        "host gives no qty_reserved",
    )
    on_missing_reorder_point: Literal["hold", "api_default"] = Field(
        "hold",
        description="an inventory row whose host stock gives no reorder_point: hold it "
        "(sending it would reset the planner's minimum quantity to 0), or send it anyway",
    )
    po_received_status: str = Field(
        "RECEIVED",
        min_length=1,
        description="status sent once for a PO that left the open set with stock received",
    )
    po_cancelled_status: str = Field(
        "CANCELLED",
        min_length=1,
        description="status sent once for a PO that left the open set with nothing received",
    )
    po_closed_status: str = Field(
        "CLOSED",
        min_length=1,
        description="status sent once for a PO that left the open set, the host saying no more",
    )
    order_cancelled_status: str = Field(
        "CANCELLED",
        description="status field sent once with a cancelled customer order ('': none; its "
        "lines go with quantity 0 either way)",
    )
    upsert_endpoints: list[str] = Field(
        default_factory=lambda: list(UPSERT_ENDPOINTS),
        description="endpoints that replace a row sent again with the same natural key; the "
        "others may add it again: their lost answers are never re-sent, changed rows held",
    )
    on_missing_forecast: Literal["hold", "api_default"] = Field(
        "hold",
        description="weekly demand (the host has no forecast): hold it (sending it would "
        "overwrite the planner's forecast with actualDemand), or send it anyway",
    )

    @model_validator(mode="after")
    def _open_week_replaced(self) -> Options:
        if self.include_open_week and "demand-history" not in self.upsert_endpoints:
            raise ValueError(
                "include_open_week = true re-sends the open week each run it grows: an API "
                'that adds into a week would count it again. Only with "demand-history" '
                "in upsert_endpoints"
            )
        return self

    @field_validator("endpoints", "upsert_endpoints")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in KINDS]
        if unknown:
            raise ValueError(f"unknown endpoint(s) {unknown}; expected some of {list(KINDS)}")
        return [e for e in ORDER if e in value]
