"""Deductible input VAT (进项税额) of a claim's lines, from the VAT invoices they cite.

The company deducts the VAT of a special invoice (增值税专用发票, 数电票（增值税专用发票）) issued
to it (its buyer taxpayer id is one of the company's), and of a passenger ticket naming one of
its employees (and the company, where the ticket names a buyer; see
:mod:`streams.passenger_vat`), so that VAT is booked apart from the expense. With no company
taxpayer id known, nothing is deducted: the buyer cannot be checked. The VAT of any other
invoice (普票, an invoice to another buyer, a red-letter invoice, a stranger's ticket) stays part
of the expense.

Allocation goes line by line, in claim order. A line's amount covers its cited invoices in turn,
each up to what is left of that invoice's total. An invoice cited by two lines is split between
them, never counted twice. The covered part's tax and net, per rate, are the invoice's x covered
/ total, rounded to the fen. The part that completes an invoice takes exactly what is left, so an
invoice claimed in full yields exactly the tax it states.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from streams.passenger_vat import TICKET_KINDS, not_deductible_ticket

_VAT_CURRENCY = "CNY"  # VAT invoices state CNY


@dataclass(frozen=True)
class VatPolicy:
    deductible_types: frozenset[str]
    company_tax_ids: frozenset[str]  # the buyers whose VAT is ours; none: nothing deducts

    def with_tax_ids(self, more: frozenset[str]) -> VatPolicy:
        return self if more <= self.company_tax_ids else VatPolicy(
            self.deductible_types, self.company_tax_ids | more)  # fmt: skip


NO_COMPANY_TAX_ID = (
    "no company taxpayer id is configured (ERPBRIDGE_COMPANY_TAX_IDS, or a "
    "tax_id file in the reference data), so the buyer cannot be checked"
)


@dataclass(frozen=True)
class ClaimedLine:
    currency: str  # of the amount as claimed
    amount_minor: int  # in the company currency
    invoice_keys: Sequence[str]


IsEmployee = Callable[[str, str | None], bool]  # (name, masked ID number) -> listed?


def nobody(name: str, id_masked: str | None) -> bool:
    return False


def not_deductible(facts: Mapping[str, Any], policy: VatPolicy,
                   is_employee: IsEmployee = nobody) -> str | None:  # fmt: skip
    """Why the invoice's VAT cannot be deducted, or None when it can. ``is_employee`` tells
    whether a ticket's traveller works for the company."""
    if facts["type"] not in policy.deductible_types:
        return f"a {facts['type']} invoice is not deductible"
    buyer = facts.get("buyer_tax_id")
    ticket = facts["type"] in TICKET_KINDS
    if not policy.company_tax_ids:
        return NO_COMPANY_TAX_ID
    if buyer not in policy.company_tax_ids and (buyer or not ticket):
        ours = ", ".join(sorted(policy.company_tax_ids))
        return f"issued to {buyer or 'no taxpayer id'}, not to the company ({ours})"
    if Decimal(facts["total"]) <= 0:
        return "a red-letter (negative) invoice"
    if ticket:
        return not_deductible_ticket(facts.get("traveller"), is_employee)
    return None


def vat_notes(invoices: Mapping[str, Mapping[str, Any]], policy: VatPolicy,
              is_employee: IsEmployee = nobody) -> list[str]:  # fmt: skip
    """Why the VAT of each cited invoice of a deductible kind is not deducted (an invoice to
    another buyer, a stranger's ticket...): for the operator and the upstream system."""
    notes = []
    for key, facts in sorted(invoices.items()):
        if facts is not None and facts["type"] in policy.deductible_types:
            why = not_deductible(facts, policy, is_employee)
            if why:
                notes.append(f"invoice {key}: input VAT not deducted: {why}")
    return notes


def allocate(lines: Sequence[ClaimedLine], invoices: Mapping[str, Mapping[str, Any]],
             policy: VatPolicy, company_currency: str,
             is_employee: IsEmployee = nobody) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Per line, its InputVat records (invoice_ref, tax_rate, base_minor, tax_minor)."""
    if company_currency != _VAT_CURRENCY:
        return [[] for _ in lines]
    left: dict[str, _Left] = {
        key: _Left.of(facts)
        for key, facts in invoices.items()
        if facts is not None and not_deductible(facts, policy, is_employee) is None
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
