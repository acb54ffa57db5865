"""Typed models of what upstream systems send, shared by every source (webhook, poll, file):
each rule is written once here, and each model turns into its Avro contract record.

Validation errors become ``field: message`` lines an operator (or the upstream developer) can
act on; see :func:`problems_of`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import zoneinfo
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connectors.sources.fields import (
    ID_PATTERN,
    clean_text,
    identifier,
    parse_amount,
    parse_currency,
    parse_date,
    to_minor_units,
)
from erpbridge.boundary import LIMITS
from erpbridge.model import (
    TICKET_TYPES,
    InvoiceStatus,
    InvoiceType,
    invoice_key,
    invoice_ref,
    valid_uscc,
)

SOURCE_TZ = zoneinfo.ZoneInfo("Asia/Shanghai")  # naive timestamps, unless the source says else


def _text(value: object) -> object:
    return clean_text(value) if isinstance(value, str) else value


def _date(value: object) -> object:
    return parse_date(value) if isinstance(value, str) else value


def _amount(value: object, signed: bool = False) -> object:
    if isinstance(value, bool):
        raise ValueError("expected an amount, got a boolean")
    if isinstance(value, str | int | float | Decimal):
        return parse_amount(str(value), signed=signed)
    return value


def _timestamp(value: object, info: ValidationInfo) -> object:
    """ISO text or a datetime; a naive one is in the source's zone (validation context ``tz``,
    see :meth:`erpbridge.config.Settings.time_zone_for`), else China time. Stored as UTC."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(clean_text(value).replace("Z", "+00:00"))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=(info.context or {}).get("tz", SOURCE_TZ))
        try:
            value = value.astimezone(datetime.UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()} is out of range in UTC") from None
        if not 1900 <= value.year <= 9999:
            raise ValueError(f"{value.isoformat()} is not a plausible time (years 1900 to 9999)")
    return value


Text = Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=200)]
# Ids: printable characters only (no control, format, private-use or unassigned ones: no
# zero-width space, BOM or terminal escape), at most 64 (see connectors.sources.fields.identifier)
_ID_SCHEMA = {
    "pattern": ID_PATTERN,
    "description": "Printable characters only, in NFC: no control, "
    "format (zero-width, BOM, bidi), surrogate, private-use or unassigned ones, and no "
    "combining or non-spacing marks.",
}
Id = Annotated[str, BeforeValidator(lambda v: identifier(v) if isinstance(v, str) else v),
               Field(min_length=1, max_length=64, json_schema_extra=_ID_SCHEMA)]  # fmt: skip
OptionalId = Annotated[
    Annotated[str, Field(max_length=64, json_schema_extra=_ID_SCHEMA)] | None,
    BeforeValidator(lambda v: identifier(v) or None if isinstance(v, str) else v)]  # fmt: skip
Lines = Field(min_length=1, max_length=LIMITS.max_lines_per_document)
OptionalText = Annotated[str | None, BeforeValidator(lambda v: _text(v) or None)]
Amount = Annotated[Decimal, BeforeValidator(_amount)]
Currency = Annotated[str, BeforeValidator(lambda v: parse_currency(str(v)))]
Day = Annotated[datetime.date, BeforeValidator(_date)]
Timestamp = Annotated[datetime.datetime, BeforeValidator(_timestamp)]


def _scaled(places: int) -> AfterValidator:
    """Exactly ``places`` decimals, as the contract's decimal(p, places) stores them."""
    step = Decimal(1).scaleb(-places)

    def check(value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        if value != value.quantize(step):
            raise ValueError(f"{value} has more than {places} decimals")
        return value.quantize(step)

    return AfterValidator(check)


Money2 = Annotated[Decimal, BeforeValidator(_amount), _scaled(2)]
# An invoice's amounts: 0 on a tax-free line, negative on a red-letter invoice.
SignedMoney2 = Annotated[Decimal, BeforeValidator(lambda v: _amount(v, signed=True)), _scaled(2)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class ClaimLineIn(_In):
    category: Annotated[str, BeforeValidator(lambda v: clean_text(v).lower() or "general")] = (
        "general"
    )
    description: Annotated[str, BeforeValidator(_text)] = ""
    amount: Amount
    currency: Currency
    expense_date: Day
    invoice_refs: list[Id] = Field([], max_length=LIMITS.max_lines_per_document)

    @model_validator(mode="after")
    def _fits_minor_units(self) -> ClaimLineIn:
        to_minor_units(self.amount, self.currency)
        return self


class ClaimIn(_In):
    """An expense claim (报销单) as an expense or travel platform submits it."""

    claim_id: Id
    event_id: OptionalId = None
    employee_id: Annotated[str, BeforeValidator(lambda v: identifier(v).upper()
                                                if isinstance(v, str) else v),
                           Field(min_length=1, max_length=64)]  # fmt: skip
    employee_name: Text
    department: OptionalText = None
    cost_centre: OptionalText = None
    project: OptionalText = None
    purpose: OptionalText = None
    submitted_at: Timestamp | None = None
    lines: list[ClaimLineIn] = Lines

    def to_record(self, source_system: str, origin: dict[str, str]) -> dict[str, Any]:
        lines = [{"line_no": n, **line.model_dump()} for n, line in enumerate(self.lines, 1)]
        employee = {
            "id": self.employee_id,
            "name": self.employee_name,
            "department": self.department,
            "cost_centre": self.cost_centre,
        }
        content = self.model_dump(mode="json", exclude={"event_id", "submitted_at"})
        return {
            "event_id": self.event_id or content_event_id(source_system, self.claim_id, content),
            "claim_id": self.claim_id, "source_system": source_system, "employee": employee,
            "project": self.project, "purpose": self.purpose, "lines": lines,
            "submitted_at": self.submitted_at or datetime.datetime.now(datetime.UTC),
            "origin": origin,
        }  # fmt: skip


_DECISIONS = {"approve": "APPROVE", "approved": "APPROVE", "同意": "APPROVE", "通过": "APPROVE",
              "reject": "REJECT", "rejected": "REJECT", "驳回": "REJECT", "拒绝": "REJECT",
              "return": "RETURN", "returned": "RETURN", "退回": "RETURN"}  # fmt: skip


class ApprovalIn(_In):
    """One approval step's decision, as a workflow (OA) system reports it."""

    claim_id: Id
    event_id: OptionalId = None
    step: int = Field(ge=1, le=100)
    step_name: OptionalText = None
    approver_id: Id
    approver_name: Text
    decision: Annotated[
        Literal["APPROVE", "REJECT", "RETURN"],
        BeforeValidator(
            lambda v: _DECISIONS.get(clean_text(v).lower(), v) if isinstance(v, str) else v
        ),
    ]
    comment: OptionalText = None
    decided_at: Timestamp
    final: bool

    def to_record(self, source_system: str, origin: dict[str, str]) -> dict[str, Any]:
        content = self.model_dump(mode="json", exclude={"event_id"})
        return {**self.model_dump(exclude={"event_id"}), "source_system": source_system,
                "event_id": self.event_id or content_event_id(source_system, self.claim_id,
                                                              content)}  # fmt: skip


def _tax_id(value: object) -> object:
    if not isinstance(value, str):
        return value
    code = clean_text(value).upper().replace(" ", "")
    if len(code) == 18 and not valid_uscc(code):
        raise ValueError(f"{value!r} is not a valid unified social credit code (check character)")
    if not re.fullmatch(r"[0-9A-Z]{15,20}", code):
        raise ValueError(f"{value!r} is not a taxpayer id (15 to 20 letters and digits)")
    return code


TaxId = Annotated[str, BeforeValidator(_tax_id)]
_INVOICE_TYPES = {"专票": "VAT_SPECIAL", "增值税专用发票": "VAT_SPECIAL",
                  "普票": "VAT_GENERAL", "增值税普通发票": "VAT_GENERAL",
                  "数电专票": "DIGITAL_SPECIAL", "数电票（增值税专用发票）": "DIGITAL_SPECIAL",
                  "数电普票": "DIGITAL_GENERAL",
                  "数电票（普通发票）": "DIGITAL_GENERAL",
                  "铁路电子客票": "RAILWAY_TICKET", "电子发票（铁路电子客票）": "RAILWAY_TICKET",
                  "航空运输电子客票行程单": "AIR_ITINERARY",
                  "电子发票（航空运输电子客票行程单）": "AIR_ITINERARY",
                  "公路客票": "ROAD_TICKET", "水路客票": "WATERWAY_TICKET"}  # fmt: skip
# Lookups go through clean_text (NFKC folds full-width brackets), so the keys must too.
_INVOICE_TYPES = {clean_text(label): code for label, code in _INVOICE_TYPES.items()}
_INVOICE_STATUSES = {"正常": "NORMAL", "作废": "VOID", "已作废": "VOID", "红冲": "RED_FLUSHED",
                     "已红冲": "RED_FLUSHED", "全额红冲": "RED_FLUSHED"}  # fmt: skip
_MASKED_ID = re.compile(r"[0-9Xx*]{6,18}")


def _label(labels: dict[str, str]) -> BeforeValidator:
    """A platform's Chinese label (or the contract's symbol, any case) -> the symbol."""
    return BeforeValidator(lambda v: labels.get(clean_text(v), clean_text(v).upper())
                           if isinstance(v, str) else v)  # fmt: skip


def _percent(value: object) -> object:
    """'9%' -> 0.09 (a rate without a percent sign is read by pydantic as it is)."""
    if isinstance(value, str) and "%" in value:
        try:
            return Decimal(clean_text(value).rstrip("%")) / 100
        except ArithmeticError:
            raise ValueError(f"not a percentage: {value!r}") from None
    return value


Rate = Annotated[Decimal, BeforeValidator(_percent), Field(ge=0, le=1), _scaled(4)]
Quantity = Annotated[Decimal | None, Field(ge=0, lt=Decimal(10) ** 12), _scaled(6)]


class InvoiceLineIn(_In):
    name: Text
    specification: OptionalText = None
    unit: OptionalText = None
    quantity: Quantity = None
    unit_price: Quantity = None
    amount_net: SignedMoney2
    tax_rate: Rate
    tax_amount: SignedMoney2


class PassengerIn(_In):
    """The passenger-transport block of a ticket: who travelled, where, and the fare parts."""

    traveller_name: Text
    traveller_id_masked: OptionalText = None
    travel_date: Day | None = None
    departure: OptionalText = None
    destination: OptionalText = None
    carrier_number: OptionalText = None
    seat_class: OptionalText = None
    fare: Annotated[SignedMoney2, Field(ge=0)]
    fuel_surcharge: Annotated[SignedMoney2 | None, Field(ge=0)] = None
    development_fund: Annotated[SignedMoney2 | None, Field(ge=0)] = None
    stated_vat: Annotated[SignedMoney2 | None, Field(ge=0)] = None

    @field_validator("traveller_id_masked")
    @classmethod
    def _masked(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _MASKED_ID.fullmatch(value):
            raise ValueError("expected an ID number as a ticket prints it (digits, X and *)")
        if "*" not in value:
            raise ValueError(
                "a full ID number is refused: send it masked (e.g. 3101**********1234)"
            )
        return value.upper()

    def amount(self) -> Decimal:
        """What the ticket costs in all: fare, fuel surcharge and development fund."""
        return self.fare + (self.fuel_surcharge or 0) + (self.development_fund or 0)


_ORIGINAL_TYPES = ("application/xml", "application/pdf", "application/ofd", "application/json")


class OriginalIn(_In):
    """The original e-invoice file a webhook carries (XML, PDF or OFD), base64-encoded: archived
    as it is, never published (the Invoice record carries its SHA-256)."""

    media_type: Literal[_ORIGINAL_TYPES]  # type: ignore[valid-type]
    file_name: OptionalText = None
    content_base64: Annotated[str, Field(min_length=4, max_length=LIMITS.max_original_base64)]

    def content(self) -> bytes:
        try:
            return base64.b64decode(self.content_base64, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"content_base64 is not base64: {exc}") from None

    @field_validator("content_base64")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not base64: {exc}") from None
        return value


class InvoiceIn(_In):
    """A China VAT invoice: paper-era (code + 8-digit number) or 数电票 (20-digit number), or a
    passenger ticket (with its ``passenger`` block); a red-letter one (negative amounts) names
    the blue invoice it offsets in ``red_of``."""

    event_id: OptionalId = None
    invoice_type: Annotated[InvoiceType, _label(_INVOICE_TYPES)] = "OTHER"
    invoice_code: OptionalId = None
    invoice_number: Annotated[str, BeforeValidator(lambda v: clean_text(v).replace(" ", ""))]
    issue_date: Day
    seller_name: Text
    seller_tax_id: TaxId
    buyer_name: Text
    buyer_tax_id: Annotated[str | None, BeforeValidator(lambda v: _tax_id(v) if v else None)] = None
    amount_net: SignedMoney2
    tax_rate: Rate | None = None
    tax_amount: SignedMoney2
    total: SignedMoney2
    check_code: OptionalText = None
    lines: list[InvoiceLineIn] = Field([], max_length=LIMITS.max_lines_per_document)
    claim_id: OptionalId = None
    passenger: PassengerIn | None = None
    platform_status: Annotated[InvoiceStatus, _label(_INVOICE_STATUSES)] = "NORMAL"
    original: OriginalIn | None = None
    red_of: Annotated[str | None, BeforeValidator(
        lambda v: invoice_ref(clean_text(v)) if isinstance(v, str) and v.strip() else None
    )] = None  # fmt: skip

    @field_validator("invoice_number")
    @classmethod
    def _number_shape(cls, value: str) -> str:
        if not re.fullmatch(r"\d{8}|\d{20}", value):
            raise ValueError("expected 8 digits (with an invoice code) or 20 digits (数电票)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> InvoiceIn:
        if len(self.invoice_number) == 8 and not re.fullmatch(
            r"\d{10}|\d{12}", self.invoice_code or ""
        ):
            raise ValueError("an 8-digit invoice number needs a 10 or 12-digit invoice_code")
        if self.amount_net + self.tax_amount != self.total:
            raise ValueError(
                f"amount_net {self.amount_net} + tax_amount {self.tax_amount} != total {self.total}"
            )
        self._ticket_consistent()
        self._red_consistent()
        return self

    def _ticket_consistent(self) -> None:
        ticket = self.invoice_type in TICKET_TYPES
        if ticket and self.passenger is None:
            raise ValueError(f"a {self.invoice_type} needs its passenger block (traveller, fare)")
        if self.passenger is None:
            return
        if not ticket:
            raise ValueError(f"a {self.invoice_type} invoice has no passenger block")
        if self.invoice_type in ("RAILWAY_TICKET", "AIR_ITINERARY") and len(
                self.invoice_number) != 20:  # fmt: skip
            raise ValueError(f"an electronic {self.invoice_type} has a 20-digit number")
        parts = self.passenger
        if self.invoice_type != "AIR_ITINERARY" and (parts.fuel_surcharge or
                                                     parts.development_fund):  # fmt: skip
            raise ValueError(f"a {self.invoice_type} has no fuel surcharge or development fund")
        if parts.amount() != self.total:
            raise ValueError(f"passenger: fare, fuel surcharge and development fund add up to "
                             f"{parts.amount()}, not total {self.total}")  # fmt: skip
        if parts.stated_vat is not None and parts.stated_vat > parts.fare + (
                parts.fuel_surcharge or 0):  # fmt: skip
            raise ValueError(f"passenger.stated_vat {parts.stated_vat} exceeds fare and fuel "
                             "surcharge")  # fmt: skip

    def _red_consistent(self) -> None:
        if self.red_of is None and self.total < 0:
            raise ValueError("a red-letter invoice (negative total) must name the blue invoice "
                             "it offsets in red_of")  # fmt: skip
        if self.red_of is not None and self.total >= 0:
            raise ValueError("a red-letter invoice (with red_of) has a negative total")
        if self.red_of is not None and self.red_of == self.key:
            raise ValueError("a red-letter invoice cannot offset itself")

    @property
    def key(self) -> str:
        return invoice_key(self.invoice_code, self.invoice_number)

    def to_record(self, source_system: str, origin: dict[str, str]) -> dict[str, Any]:
        """The Invoice record (the source sets ``original_sha256`` once it archived the
        original, see :mod:`connectors.sources.originals`)."""
        content = self.model_dump(mode="json", exclude={"event_id", "original"})
        lines = [line.model_dump() for line in self.lines]
        return {
            **self.model_dump(exclude={"event_id", "lines", "passenger", "original"}),
            "lines": lines,
            "passenger": None if self.passenger is None else self.passenger.model_dump(),
            "source_system": source_system,
            "received_at": datetime.datetime.now(datetime.UTC),
            "event_id": self.event_id or content_event_id(source_system, self.key, content),
            "origin": origin,
            "original_sha256": None,
        }


def problems_of(error: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as ``{"field": "lines[0].amount", "message": ...}``."""
    found = []
    for item in error.errors(include_url=False):
        parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]]
        field = "".join(parts).lstrip(".") or "body"
        message = str(item["msg"]).removeprefix("Value error, ")
        found.append({"field": field, "message": message})
    return found


def content_event_id(source_system: str, entity_id: str, content: object) -> str:
    import hashlib
    import json

    digest = hashlib.sha256(
        json.dumps(
            [source_system, entity_id, content], sort_keys=True, ensure_ascii=False, default=str
        ).encode()
    ).hexdigest()
    return f"{source_system}:{entity_id}:{digest[:16]}"
