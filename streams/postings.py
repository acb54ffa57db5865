"""ExpenseClaim record -> ErpPosting record: company currency, minor units, ERP accounts."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from erpbridge.model import CURRENCY_EXPONENTS


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

    def account_for(self, category: str) -> str:
        return self.category_accounts.get(category.lower(), self.default_account)


def build_posting(claim: Mapping[str, Any], rules: PostingRules) -> dict[str, Any]:
    problems: list[str] = []
    lines = []
    for line in claim["lines"]:
        where = f"lines[{line['line_no']}]"
        if line["currency"] != rules.company_currency:
            problems.append(
                f"{where}.currency: {line['currency']} needs an exchange rate to "
                f"{rules.company_currency}; none is configured"
            )
            continue
        minor = Decimal(line["amount"]).scaleb(CURRENCY_EXPONENTS[line["currency"]])
        if minor != minor.to_integral_value():
            problems.append(
                f"{where}.amount: {line['amount']} is finer than {line['currency']} minor units"
            )
            continue
        description = f"{line['category']}: {line['description']}".rstrip(": ")
        lines.append({
            "account_code": rules.account_for(line["category"]),
            "description": description,
            "amount_minor": int(minor),
            "original_amount": line["amount"],
            "original_currency": line["currency"],
            "exchange_rate": Decimal("1.00000000"),
            "invoice_refs": list(line["invoice_refs"]),
        })  # fmt: skip
    if not claim["lines"]:
        problems.append("lines: a claim needs at least one line")
    if problems:
        reason = (
            "no_exchange_rate" if any("exchange rate" in p for p in problems) else ("invalid_claim")
        )
        raise PostingRefused(reason, problems)
    employee = claim["employee"]
    return {
        "posting_id": claim["claim_id"],
        "claim_id": claim["claim_id"],
        "claim_version": 1,
        "source_system": claim["source_system"],
        "employee_id": employee["id"].upper(),
        "employee_name": employee["name"],
        "cost_centre": employee.get("cost_centre"),
        "posting_date": max(line["expense_date"] for line in claim["lines"]),
        "currency": rules.company_currency,
        "lines": lines,
        "total_minor": sum(line["amount_minor"] for line in lines),
        "created_at": datetime.datetime.now(datetime.UTC),
    }
