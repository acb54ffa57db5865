"""The kinds of upstream entity every source accepts: model, topic, record key. One table."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.sources.models import ApprovalIn, ClaimIn, InvoiceIn


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[BaseModel]
    role: str  # the topic it is published to, see erpbridge.topics
    key: Callable[[Any], str]
    summary: str

    def validate(self, payload: object, tz: datetime.tzinfo | None = None) -> Any:
        """The validated model (raises pydantic's ValidationError with every problem); naive
        timestamps are read in ``tz`` (the source's zone)."""
        try:
            return self.model.model_validate(payload, context={"tz": tz} if tz else None)
        except (ArithmeticError, RecursionError) as exc:  # a rule's arithmetic met a wild value
            raise ValidationError.from_exception_data(
                self.model.__name__,
                [
                    {
                        "type": "value_error",
                        "loc": ("body",),
                        "input": None,
                        "ctx": {"error": ValueError(f"{type(exc).__name__}: {exc}")},
                    }
                ],
            ) from exc


KINDS: dict[str, Kind] = {
    "claims": Kind("claims", ClaimIn, "claims_raw", lambda m: m.claim_id,
                   "Submit an expense claim (报销单)"),
    "approvals": Kind("approvals", ApprovalIn, "approvals_raw", lambda m: m.claim_id,
                      "Report an approval step's decision"),
    "invoices": Kind("invoices", InvoiceIn, "invoices_raw", lambda m: m.key,
                     "Submit a VAT invoice (增值税发票 / 数电票)"),
}  # fmt: skip
