"""Builds the Tryton template database's books: company (CNY), chart, fiscal years, sequences.

Run as a separate process (proteus binds trytond globally):
    python -m deploy.local.tryton_template <trytond.conf> <database> <first-year> <last-year>
    python -m deploy.local.tryton_template <trytond.conf> <database> --upgrade
"""

from __future__ import annotations

import datetime
import sys
from decimal import Decimal
from typing import Any


def build(config_file: str, database: str, first_year: int, last_year: int) -> None:
    from proteus import Model, config
    from trytond.modules.account.tests.tools import create_chart, create_fiscalyear
    from trytond.modules.account_invoice.tests.tools import (
        create_payment_term,
        set_fiscalyear_invoice_sequences,
    )
    from trytond.modules.company.tests.tools import create_company, get_company

    config.set_trytond(database=database, config_file=config_file)
    Party = Model.get("party.party")
    company_party = Party(name="ERPBridge Demo Co., Ltd.")
    company_party.save()
    create_company(party=company_party, currency="CNY")
    company = get_company()
    create_chart(company)
    # Travel and entertainment claims book to "Selling, General And Administrative" (5.2.2);
    # the English chart does not flag that account type as an expense, so invoices refuse it.
    AccountType = Model.get("account.account.type")
    for account_type in AccountType.find(
        [("name", "=", "Selling, General and Administrative expenses")]
    ):
        account_type.expense = True
        account_type.save()
    _input_vat(company)
    for year in range(first_year, last_year + 1):
        fiscalyear = set_fiscalyear_invoice_sequences(
            create_fiscalyear(company, (datetime.date(year, 1, 1), datetime.date(year, 12, 31)))
        )
        fiscalyear.click("create_period")
    term = create_payment_term()
    term.save()
    _analytic(company, datetime.date.today().year)


# Departments and cost centres as analytic accounts (erpbridge source masterdata reads them):
# root code -> (root name, {code: name}); the codes are the ERP codes of samples/reference
ANALYTIC = {
    "DEPT": ("部门", {"SALES-EAST": "华东销售部", "SALES-NORTH": "华北销售部",
                     "OVERSEAS": "海外事业部"}),
    "CC": ("成本中心", {"CC-SH-01": "上海成本中心", "CC-BJ-01": "北京成本中心",
                       "CC-SG-01": "新加坡成本中心"}),
}  # fmt: skip


# this year's budget of each cost centre (analytic_budget), in CNY
BUDGETS = {"CC-SH-01": Decimal("50000.00"), "CC-BJ-01": Decimal("30000.00"),
           "CC-SG-01": Decimal("20000.00")}  # fmt: skip


def _analytic(company: Any, year: int) -> None:
    from proteus import Model

    Account = Model.get("analytic_account.account")
    roots = {}
    for root_code, (root_name, accounts) in ANALYTIC.items():
        root = roots[root_code] = Account(name=root_name, code=root_code, type="root",
                                          company=company)  # fmt: skip
        root.save()
        for code, name in accounts.items():
            Account(name=name, code=code, type="normal", root=root, parent=root,
                    company=company).save()  # fmt: skip
    Budget = Model.get("analytic_account.budget")
    budget = Budget(name=f"{year} 费用预算", start_date=datetime.date(year, 1, 1),
                    end_date=datetime.date(year, 12, 31), root=roots["CC"],
                    company=company)  # fmt: skip
    budget.save()
    budget.click("update_lines")  # a line per cost centre
    budget.reload()
    for line in budget.lines:
        if line.account is not None and line.account.code in BUDGETS:
            line.amount = BUDGETS[line.account.code]
            line.save()


# China's VAT rates (13% goods, 9% transport/building, 6% services, 5%/3%/1% simplified).
INPUT_VAT_RATES = ("0.13", "0.09", "0.06", "0.05", "0.03", "0.01")


def _input_vat(company: Any) -> None:
    """An input VAT account (1.4.4, 进项税额: a current tax asset) and a purchase tax on it per
    VAT rate, for the deductible VAT of special invoices. Adds only what is missing."""
    from proteus import Model

    Account, Tax = Model.get("account.account"), Model.get("account.tax")
    found = Account.find([("code", "=", "1.4.4"), ("company", "=", company.id)])
    if found:
        (account,) = found
    else:
        (parent,) = Account.find([("code", "=", "1.4.0"), ("company", "=", company.id)])
        (tax_account,) = Account.find([("code", "=", "6.3.6"), ("company", "=", company.id)])
        account = Account(name="Input VAT (进项税额)", code="1.4.4", parent=parent,
                          type=tax_account.type)  # fmt: skip
        account.save()
    have = {tax.rate for tax in Tax.find([("invoice_account", "=", account.id)])}
    for rate in INPUT_VAT_RATES:
        if Decimal(rate) in have:
            continue
        percent = f"{Decimal(rate) * 100:.0f}%"
        tax = Tax(name=f"Input VAT {percent}", description=f"进项税额 {percent}",
                  type="percentage", rate=Decimal(rate), invoice_account=account,
                  credit_note_account=account)  # fmt: skip
        tax.save()


def upgrade(config_file: str, database: str) -> None:
    """Bring a database copied from an older template up to this one's books, keeping its data."""
    from proteus import config
    from trytond.modules.company.tests.tools import get_company

    config.set_trytond(database=database, config_file=config_file)
    _input_vat(get_company())


if __name__ == "__main__":
    if sys.argv[3:4] == ["--upgrade"]:
        upgrade(sys.argv[1], sys.argv[2])
    else:
        conf, db, first, last = sys.argv[1:5]
        build(conf, db, int(first), int(last))
