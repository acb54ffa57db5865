"""Deductible input VAT (进项税额) of a claim's lines, from the VAT invoices they cite.

The company deducts the VAT of a special invoice (增值税专用发票, 数电票（增值税专用发票）) issued
to it, so that VAT is booked apart from the expense. The VAT of any other invoice (普票, an
invoice to another buyer, a red-letter invoice) stays part of the expense.

Allocation goes line by line, in claim order. A line's amount covers its cited invoices in turn,
each up to what is left of that invoice's total. An invoice cited by two lines is split between
them, never counted twice. The covered part's tax and net, per rate, are the invoice's x covered
/ total, rounded to the fen. The part that completes an invoice takes exactly what is left, so an
invoice claimed in full yields exactly the tax it states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

_VAT_CURRENCY = "CNY"  # VAT invoices state CNY


@dataclass(frozen=True)
class VatPolicy:
    deductible_types: frozenset[str]
    company_tax_id: str | None  # None: the buyer is not checked


@dataclass(frozen=True)
class ClaimedLine:
    currency: str  # of the amount as claimed
    amount_minor: int  # in the company currency
    invoice_keys: Sequence[str]


def not_deductible(facts: Mapping[str, Any], policy: VatPolicy) -> str | None:
    """Why the invoice's VAT cannot be deducted, or None when it can."""
    if facts["type"] not in policy.deductible_types:
        return f"a {facts['type']} invoice is not deductible"
    buyer = facts.get("buyer_tax_id")
    if policy.company_tax_id and buyer != policy.company_tax_id:
        return f"issued to {buyer or 'no taxpayer id'}, not to {policy.company_tax_id}"
    if Decimal(facts["total"]) <= 0:
        return "a red-letter (negative) invoice"
    return None


def allocate(lines: Sequence[ClaimedLine], invoices: Mapping[str, Mapping[str, Any]],
             policy: VatPolicy, company_currency: str) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Per line, its InputVat records (invoice_ref, tax_rate, base_minor, tax_minor)."""
    if company_currency != _VAT_CURRENCY:
        return [[] for _ in lines]
    left: dict[str, _Left] = {
        key: _Left.of(facts)
        for key, facts in invoices.items()
        if facts is not None and not_deductible(facts, policy) is None
    }
    allocated = []
    for line in lines:
        vats: list[dict[str, Any]] = []
        uncovered = line.amount_minor if line.currency == _VAT_CURRENCY else 0
        for key in dict.fromkeys(line.invoice_keys):
            invoice = left.get(key)
            if invoice is None or uncovered <= 0 or invoice.total <= 0:
                continue
            take = min(uncovered, invoice.total)
            uncovered -= take
            vats += [{"invoice_ref": key, "tax_rate": rate, "base_minor": base,
                      "tax_minor": tax} for rate, base, tax in invoice.take(take)]  # fmt: skip
        allocated.append(vats)
    return allocated


@dataclass
class _Left:
    """What is left of one invoice to allocate, in fen: its total and net and tax per rate."""

    total: int
    parts: list[list[Any]]  # [rate, base, tax]

    @classmethod
    def of(cls, facts: Mapping[str, Any]) -> _Left:
        parts = [[None if part["rate"] is None else Decimal(part["rate"]), _fen(part["base"]),
                  _fen(part["tax"])] for part in facts["taxes"]]  # fmt: skip
        return cls(_fen(facts["total"]), parts)

    def take(self, amount: int) -> list[tuple[Decimal | None, int, int]]:
        whole = amount >= self.total
        taken = []
        for part in self.parts:
            rate, base, tax = part
            if not whole:
                base, tax = (_share(value, amount, self.total) for value in (base, tax))
            part[1] -= base
            part[2] -= tax
            if tax:
                taken.append((rate, base, tax))
        self.total -= amount
        return taken


def _fen(value: str) -> int:
    return int(Decimal(value).scaleb(2))


def _share(value: int, amount: int, total: int) -> int:
    return int((Decimal(value) * amount / total).quantize(Decimal(1), rounding=ROUND_HALF_UP))
