"""Netstock's answers as typed values: dataset and model states, audit log, popped orders.

**Quantities** in pop answers come as strings (`"99"`, the PO example) or numbers (`5.0`,
the TR/WO examples): both parse to an exact `Decimal` (the JSON is decoded with
`parse_float=Decimal`, never through a float). Pop dates are `YYYY/MM/DD`.
`pop(..., journal=fn)` hands `fn` the raw answer text before anything else is done with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator


def parse_decimal(value: Any) -> Decimal | None:
    """An exact Decimal from a JSON string or number ("99", "3.0", 5.0, 7); None/"" -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text of the float, not its binary value
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise ValueError(f"{value!r} is not a number")
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def parse_pop_date(value: Any) -> date | None:
    """`2025/11/03` (the document's format) or ISO `2025-11-03[T...]`; empty -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date):
        return value if not isinstance(value, datetime) else value.date()
    text = str(value).strip()
    for fmt in ("%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text[:10], fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{value!r} is not a date (expected YYYY/MM/DD)")


@dataclass(frozen=True, slots=True)
class JsonLines:
    """Import lines already rendered (`json_text`), joined with ',': sent as they are."""

    text: str
    count: int


class _Model(BaseModel):
    """Unknown fields are tolerated and kept: the API may grow."""

    model_config = ConfigDict(extra="allow")


class DatasetStatus(StrEnum):
    """The document's dataset status legend, in order; `FAILED`/`UNKNOWN` are tolerated extras."""

    DATASET_IMPORT_STARTED = "Dataset_import_started"
    IMPORTING = "Importing"
    IMPORTING_COMPLETE = "Importing_complete"
    TRANSFORMING = "Transforming"
    COPYING_PO_DB = "Copying_po_db"
    COMPLETE = "Complete"
    FAILED = "Failed"  # not in the legend; a server may still say it
    UNKNOWN = "unknown"  # a status this client does not know; the raw text is kept

    @classmethod
    def parse(cls, text: Any) -> DatasetStatus:
        wanted = str(text or "").strip().lower().replace(" ", "_")
        for member in cls:
            if member.value.lower() == wanted:
                return member
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """Nothing more will happen without a new call (success or failure: see `success`)."""
        return self in (DatasetStatus.COMPLETE, DatasetStatus.FAILED)

    @property
    def is_processing(self) -> bool:
        """Processing runs (or waits for the last data) after start_processing."""
        return self in (DatasetStatus.TRANSFORMING, DatasetStatus.COPYING_PO_DB)


class ModelState(_Model):
    model: str
    started_at: str | None = None
    ended_at: str | None = None
    success: bool | None = None
    minimum_expected_lines: int | None = None
    actual_lines_imported: int = 0
    marked_to_end: bool = False

    @property
    def is_open(self) -> bool:
        """Still accepting data (not yet marked to end)."""
        return not self.marked_to_end


class DatasetState(_Model):
    """`/dataset/status`: the status, its success flag, error logs and the models."""

    status: DatasetStatus
    status_text: str = ""
    success: bool | None = None
    message: str = ""
    models: list[ModelState] = Field(default_factory=list)

    @property
    def is_terminal(self) -> bool:
        """Only a terminal status is final. `success: false` at an earlier status is not
        (yet) a failure: the document defines `success` for what has completed, so a
        server may well report false while it is still importing or transforming."""
        return self.status.is_terminal

    @property
    def is_success(self) -> bool:
        return self.status is DatasetStatus.COMPLETE and self.success is True

    @property
    def is_failure(self) -> bool:
        return self.is_terminal and not self.is_success


class AuditEntry(_Model):
    timestamp: str | None = None
    message: str = ""
    log_type: str | None = None


class LegendEntry(_Model):
    status: str
    description: str = ""


class PopKind(StrEnum):
    """What `/file/pop_<kind>` returns: purchase, transfer or work orders."""

    PO = "po"
    TR = "tr"
    WO = "wo"

    @property
    def path(self) -> str:
        return f"/file/pop_{self.value}"


class PopLine(_Model):
    """The fields every generated order line shares; quantities are exact Decimals."""

    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date")

    order_number: str
    item_code: str
    quantity: Decimal
    unit_cost: Decimal | None = None
    order_date: date | None = None
    created_date: date | None = None
    username: str | None = None
    user_email_address: str | None = None
    item_description: str | None = None
    uom: str | None = None
    comments: str | None = None
    export_location_code: str | None = None
    sales_location_code: str | None = None

    @field_validator("order_number", "item_code", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | Decimal) else value

    @field_validator("*", mode="before")
    @classmethod
    def _typed(cls, value: Any, info: Any) -> Any:
        if info.field_name in cls.DECIMALS:
            return parse_decimal(value)
        if info.field_name in cls.DATES:
            return parse_pop_date(value)
        return value


class PurchaseOrderLine(PopLine):
    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost", "minimum_order_quantity")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date", "expected_receipt_date")

    supplier: str | None = None
    location_code: str | None = None
    expected_receipt_date: date | None = None
    minimum_order_quantity: Decimal | None = None


class TransferOrderLine(PopLine):
    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost", "minimum_order_quantity")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date", "receipt_date")

    transfer_from_code: str | None = None
    transfer_to_code: str | None = None
    receipt_date: date | None = None
    minimum_order_quantity: Decimal | None = None


class WorkOrderLine(PopLine):
    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost", "minimum_quantity")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date", "due_date")

    supplier: str | None = None
    location_code: str | None = None
    due_date: date | None = None
    minimum_quantity: Decimal | None = None


LINE_MODELS: Final[Mapping[PopKind, type[PopLine]]] = {
    PopKind.PO: PurchaseOrderLine,
    PopKind.TR: TransferOrderLine,
    PopKind.WO: WorkOrderLine,
}


@dataclass(frozen=True)
class PopResult:
    """One popped file: its lines, and the raw answer text exactly as received."""

    kind: PopKind
    file_name: str | None
    lines: list[PopLine]
    raw: str
    message: str = ""
    request_id: str | None = None


@dataclass(frozen=True)
class Envelope:
    """A successful `{api_call_status: true, message, data}` answer."""

    status: int
    message: str
    data: Any
    raw: str
    request_id: str | None
    body: dict[str, Any]
