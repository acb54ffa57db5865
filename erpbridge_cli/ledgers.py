"""The ERP read back for reconciliation: each writer's documents as the books compare them."""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from typing import Any

from books.reconcile import ErpDocument, ErpLedger
from connectors.erp.rest import RestErpSettings, RestErpWriter, at_path
from connectors.erp.tryton import TrytonSettings, TrytonWriter


class TrytonLedger:
    """Tryton's supplier invoices by reference (the posting id), and those of the expense
    journal (the integration's own) by date."""

    def __init__(self, config: TrytonSettings) -> None:
        self.writer = TrytonWriter.from_settings(config)

    def documents(self, references: list[str]) -> list[ErpDocument]:
        return [_tryton_document(invoice) for invoice in self.writer.find_invoices(references)]

    def documents_between(self, start: datetime.date, end: datetime.date) -> list[ErpDocument]:
        return [_tryton_document(i) for i in self.writer.invoices_between(start, end)]

    def close(self) -> None:
        self.writer.close()


class RestLedger:
    """A REST gateway's documents through its batch lookup when it has one
    (``ERPBRIDGE_REST_ERP_BATCH_LOOKUP_PATH``), else its lookup (one request per reference, a few
    at a time), and, when it has one, its listing by date (``ERPBRIDGE_REST_ERP_LIST_PATH``)."""

    def __init__(self, config: RestErpSettings) -> None:
        self.config = config
        self.writer = RestErpWriter(config)
        self.pool = ThreadPoolExecutor(config.lookup_workers, thread_name_prefix="erp-lookup")

    def documents(self, references: list[str]) -> list[ErpDocument]:
        if self.config.batch_lookup_path is not None:
            size = self.config.batch_lookup_size
            chunks = [references[n : n + size] for n in range(0, len(references), size)]
            return [self._document(answer) for batch in self.pool.map(self.writer.lookup_many,
                                                                      chunks)
                    for answer in batch or ()]  # fmt: skip
        found = self.pool.map(self.writer.lookup, references)
        return [self._document(answer) for answer in found if answer is not None]

    def documents_between(
        self, start: datetime.date, end: datetime.date
    ) -> list[ErpDocument] | None:
        listed = self.writer.listing(start, end)
        return None if listed is None else [self._document(answer) for answer in listed]

    def close(self) -> None:
        self.pool.shutdown()
        self.writer.close()

    def _document(self, answer: dict[str, Any]) -> ErpDocument:
        config = self.config
        state = str(at_path(answer, config.state_field) or "")
        number = at_path(answer, config.number_field)
        day = at_path(answer, config.date_field)
        return ErpDocument(
            reference=str(at_path(answer, config.reference_field)),
            number=None if number is None else str(number),
            state="posted"
            if state in config.posted_states
            else "paid"
            if state in config.paid_states
            else state or "unknown",  # fmt: skip
            total_minor=_minor(answer, config.total_field),
            tax_minor=_minor(answer, config.tax_field),
            date=datetime.date.fromisoformat(str(day)[:10]) if day else None,
        )


def ledger_for(erp: str) -> ErpLedger:
    """The ledger of the writer registered as ``erp``, configured from its environment."""
    if erp == "tryton":
        return TrytonLedger(TrytonSettings())
    if erp == "rest":
        return RestLedger(RestErpSettings())
    raise ValueError(f"no ledger for the ERP writer {erp!r} (known: tryton, rest)")


def _minor(answer: dict[str, Any], field: str) -> int:
    amount = at_path(answer, field)
    try:
        return _to_minor(amount if amount is not None else 0)
    except InvalidOperation:
        raise ValueError(
            f"the ERP's {field} {amount!r} is not an amount: {str(answer)[:300]}"
        ) from None


def _to_minor(amount: Any) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value())


def _tryton_document(invoice: dict[str, Any]) -> ErpDocument:
    return ErpDocument(
        reference=str(invoice["reference"]), number=invoice.get("number"),
        state=str(invoice["state"]),
        total_minor=_to_minor(invoice["total_amount"]),
        tax_minor=_to_minor(invoice["tax_amount"]),
        date=invoice.get("invoice_date"))  # fmt: skip
