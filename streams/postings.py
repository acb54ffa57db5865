"""ExpenseClaim record -> ErpPosting record: mapped codes, company currency, minor units, accounts.

Every problem is collected (not just the first), each with a machine-readable reason; the
refusal's reason is the most fundamental one present (see ``_REASON_ORDER``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from erpbridge.config import Settings
from erpbridge.model import CURRENCY_EXPONENTS, DEDUCTIBLE_INVOICE_TYPES, invoice_ref
from erpbridge.reference import ReferenceData, person_name, same_person
from streams.input_vat import ClaimedLine, IsEmployee, VatPolicy, allocate, vat_notes

_REASON_ORDER = ("invalid_claim", "unknown_employee", "employee_left", "unknown_department",
                 "unknown_cost_centre", "no_exchange_rate", "no_input_vat_tax")  # fmt: skip
_RATE_PLACES = Decimal("0.00000001")


class PostingRefused(ValueError):
    """The claim cannot become a posting; ``reason`` is machine-readable, ``problems`` say why."""

    def __init__(self, reason: str, problems: list[str]) -> None:
        super().__init__(f"{reason}: {'; '.join(problems)}")
        self.reason, self.problems = reason, problems


@dataclass(frozen=True)
class PostingRules:
    company_currency: str
    default_account: str
    category_accounts: Mapping[str, str]
    require_employee_mapping: bool = True
    vat: VatPolicy = VatPolicy(frozenset(DEDUCTIBLE_INVOICE_TYPES), frozenset())

    def account_for(self, category: str, reference: ReferenceData | None = None) -> str:
        """A category's expense account: the reference data's (synced from the ERP, or loaded
        from a file), else the ``posting_category_accounts`` setting's, else the default."""
        mapped = None if reference is None else reference.category_account(category)
        return mapped or self.category_accounts.get(category.lower(), self.default_account)

    @classmethod
    def from_settings(cls, config: Settings) -> PostingRules:
        vat = VatPolicy(frozenset(config.posting_deductible_invoice_types),
                        config.all_company_tax_ids())  # fmt: skip
        return cls(config.company_currency, config.posting_default_account,
                   config.posting_category_accounts, config.streams_require_employee_mapping,
                   vat)  # fmt: skip


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, reason: str, text: str) -> None:
        self.found.append((reason, text))

    def raise_if_any(self) -> None:
        if self.found:
            reasons = {reason for reason, _ in self.found}
            reason = next(r for r in _REASON_ORDER if r in reasons)
            raise PostingRefused(reason, [text for _, text in self.found])


def build_posting(claim: Mapping[str, Any], rules: PostingRules, reference: ReferenceData,
                  invoices: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> dict[str, Any]:  # fmt: skip
    """The posting of ``claim``. ``invoices``: the facts (:func:`streams.invoice_checks.vat_facts`)
    of the invoices it cites, by invoice key, to book their deductible input VAT."""
    problems = _Problems()
    party, codes = _map_employee(claim["employee"], rules, reference, problems,
                                 _day(claim.get("submitted_at")))  # fmt: skip
    lines = [_line(line, rules, reference, problems) for line in claim["lines"]]
    if not claim["lines"]:
        problems.add("invalid_claim", "lines: a claim needs at least one line")
    problems.raise_if_any()
    booked = [line for line in lines if line is not None]
    claimed = [
        ClaimedLine(
            line["original_currency"],
            line["amount_minor"],
            [invoice_ref(ref) for ref in line["invoice_refs"]],
        )
        for line in booked
    ]
    invoices = invoices or {}
    is_employee = _employees(claim["employee"], reference)
    vat = rules.vat.with_tax_ids(reference.company_tax_ids())  # settings and master data
    for line, input_vat in zip(
        booked,
        allocate(claimed, invoices, vat, rules.company_currency, is_employee),
        strict=True,
    ):
        line["input_vat"] = input_vat
    _check_input_vat_taxes(claim["lines"], booked, reference, problems)
    problems.raise_if_any()
    return {
        "posting_id": claim["claim_id"],
        "claim_id": claim["claim_id"],
        "claim_version": 1,
        "source_system": claim["source_system"],
        "employee_id": party,
        "employee_name": claim["employee"]["name"],
        "cost_centre": codes["cost_centre"][0],
        "department": codes["department"][0],
        "cost_centre_name": codes["cost_centre"][1],
        "department_name": codes["department"][1],
        "posting_date": max(line["expense_date"] for line in claim["lines"]),
        "currency": rules.company_currency,
        "lines": booked,
        "total_minor": sum(line["amount_minor"] for line in booked),
        "tax_minor": sum(vat["tax_minor"] for line in booked for vat in line["input_vat"]),
        "kind": "BOOKING",
        "reverses": None,
        "vat_notes": vat_notes(invoices, vat, is_employee),
        "originals": [
            {"invoice_ref": key, "sha256": facts["original_sha256"]}
            for key, facts in sorted(invoices.items())
            if facts and facts.get("original_sha256")
        ],  # fmt: skip
        "created_at": datetime.datetime.now(datetime.UTC),
    }


def _check_input_vat_taxes(claimed: list[Mapping[str, Any]], booked: list[dict[str, Any]],
                           reference: ReferenceData, problems: _Problems) -> None:  # fmt: skip
    """Deductible VAT at a rate the ERP has no input VAT tax for would be refused by the ERP at
    booking time: refuse the claim here, saying what to add (once the ERP's taxes are known)."""
    rates = reference.input_vat_rates()
    if not rates:
        return
    for claim_line, line in zip(claimed, booked, strict=True):
        for vat in line["input_vat"]:
            rate = vat["tax_rate"]
            if rate is not None and rate not in rates:
                have = ", ".join(_percent(known) for known in sorted(rates))
                problems.add("no_input_vat_tax", f"lines[{claim_line['line_no']}].input_vat: "
                             f"invoice {vat['invoice_ref']} deducts VAT at {_percent(rate)}, and "
                             f"the ERP has no input VAT tax at that rate (it has {have}): add "
                             "one in the ERP and sync its master data (erpbridge source "
                             "masterdata), then replay the claim")  # fmt: skip


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"


def reversal(booking: Mapping[str, Any], invoice: str, why: str) -> dict[str, Any]:
    """The posting that offsets ``booking``'s lines citing ``invoice`` (reversed by a red-letter
    invoice, or void): a credit note in the ERP, its amounts negative. Its id is the booking's
    with ``-RED-<invoice>``."""
    lines = [_negated(line) for line in booking["lines"]
             if invoice in {invoice_ref(ref) for ref in line["invoice_refs"]}]  # fmt: skip
    return {
        **booking,
        "posting_id": f"{booking['posting_id']}-RED-{invoice}",
        "kind": "REVERSAL",
        "reverses": booking["posting_id"],
        "lines": lines,
        "total_minor": sum(line["amount_minor"] for line in lines),
        "tax_minor": sum(vat["tax_minor"] for line in lines for vat in line["input_vat"]),
        "vat_notes": [why],
        "originals": [o for o in booking["originals"] if o["invoice_ref"] == invoice],
    }


def _negated(line: Mapping[str, Any]) -> dict[str, Any]:
    vats = [dict(vat, base_minor=-vat["base_minor"], tax_minor=-vat["tax_minor"])
            for vat in line["input_vat"]]  # fmt: skip
    return dict(line, amount_minor=-line["amount_minor"], original_amount=-line["original_amount"],
                input_vat=vats)  # fmt: skip


def _employees(employee: Mapping[str, Any], reference: ReferenceData) -> IsEmployee:
    """Whether a ticket's traveller is the claimant or a colleague listed in the reference data."""
    claimant = person_name(str(employee.get("name") or ""))
    mapped = reference.employee(str(employee["id"]).strip().upper())
    own_id = mapped.id_masked if mapped else None

    def is_employee(name: str, id_masked: str | None) -> bool:
        if claimant and person_name(name) == claimant and same_person(id_masked, own_id):
            return True
        return reference.is_employee(name, id_masked)

    return is_employee


def _day(at: Any) -> datetime.date | None:
    return at.date() if isinstance(at, datetime.datetime) else None


def _map_employee(employee: Mapping[str, Any], rules: PostingRules, reference: ReferenceData,
                  problems: _Problems, submitted_on: datetime.date | None,
                  ) -> tuple[str, dict[str, tuple[str | None, str | None]]]:  # fmt: skip
    """(ERP party, {kind: (ERP code, the ERP's name of it)} for department and cost centre): the
    claim's codes, else the mapping's."""
    code = str(employee["id"]).strip().upper()
    mapped = reference.employee(code)
    if mapped is None and rules.require_employee_mapping:
        removed = " (it was removed from it)" if reference.was_removed("employee", code) else ""
        problems.add("unknown_employee",
                     f"employee.id: {code} is not in the employee mapping{removed}")  # fmt: skip
    if mapped and mapped.left_on and submitted_on and submitted_on > mapped.left_on:
        problems.add("employee_left", f"employee.id: {code} left on {mapped.left_on}, before "
                                      f"this claim was submitted ({submitted_on})")  # fmt: skip
    party = mapped.party if mapped else code
    codes: dict[str, tuple[str | None, str | None]] = {}
    for kind in ("department", "cost_centre"):
        given = employee.get(kind) or (getattr(mapped, kind) if mapped else None)
        if not given:
            codes[kind] = (None, None)
            continue
        erp_code = reference.erp_code(kind, given)
        if erp_code is None and (mapped is not None or rules.require_employee_mapping):
            problems.add(f"unknown_{kind}", f"employee.{kind}: {given} is not in the "
                                            f"{kind.replace('_', ' ')} mapping")  # fmt: skip
        codes[kind] = (erp_code or given, reference.name_of(kind, erp_code, given))
    return party, codes


def _line(line: Mapping[str, Any], rules: PostingRules, reference: ReferenceData,
          problems: _Problems) -> dict[str, Any] | None:  # fmt: skip
    where = f"lines[{line['line_no']}]"
    currency, amount = line["currency"], Decimal(line["amount"])
    own = Decimal(1).scaleb(-CURRENCY_EXPONENTS[currency])
    if amount != amount.quantize(own):
        problems.add("invalid_claim", f"{where}.amount: {amount} is finer than {currency} "
                                      "minor units")  # fmt: skip
        return None
    rate, rate_date = Decimal(1), None
    if currency != rules.company_currency:
        found = reference.rate(currency, line["expense_date"])
        if found is None:
            problems.add("no_exchange_rate", f"{where}.currency: no {currency} to "
                         f"{rules.company_currency} rate on {line['expense_date']} or the "
                         f"{reference.rate_max_age_days} days before")  # fmt: skip
            return None
        rate, rate_date = found
    exponent = CURRENCY_EXPONENTS[rules.company_currency]
    minor = (amount * rate).scaleb(exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    description = f"{line['category']}: {line['description']}".rstrip(": ")
    return {
        "account_code": rules.account_for(line["category"], reference),
        "description": description,
        "amount_minor": int(minor),
        "original_amount": amount,
        "original_currency": currency,
        "exchange_rate": rate.quantize(_RATE_PLACES),
        "invoice_refs": list(line["invoice_refs"]),
        "rate_date": rate_date,
    }
