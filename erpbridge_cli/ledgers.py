"""The ERP read back for reconciliation: each writer's documents as the books compare them."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from books.reconcile import ErpDocument
from connectors.erp.tryton import TrytonSettings, TrytonWriter


class TrytonLedger:
    """Tryton's supplier invoices by reference (the posting id), and those of the expense
    journal (the integration's own) by date."""

    def __init__(self, config: TrytonSettings) -> None:
        self.writer = TrytonWriter.from_settings(config)

    def documents(self, references: list[str]) -> list[ErpDocument]:
        return [_document(invoice) for invoice in self.writer.find_invoices(references)]

    def documents_between(self, start: datetime.date, end: datetime.date) -> list[ErpDocument]:
        return [_document(invoice) for invoice in self.writer.invoices_between(start, end)]

    def close(self) -> None:
        self.writer.close()


def _document(invoice: dict[str, Any]) -> ErpDocument:
    return ErpDocument(
        reference=str(invoice["reference"]), number=invoice.get("number"),
        state=str(invoice["state"]),
        total_minor=int((Decimal(invoice["total_amount"]) * 100).to_integral_value()),
        tax_minor=int((Decimal(invoice["tax_amount"]) * 100).to_integral_value()),
        date=invoice.get("invoice_date"))  # fmt: skip
