"""Builds the Tryton template database's books: company (CNY), chart, fiscal years, sequences.

Run as a separate process (proteus binds trytond globally):
    python -m deploy.local.tryton_template <trytond.conf> <database> <first-year> <last-year>
"""

from __future__ import annotations

import datetime
import sys


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
    for year in range(first_year, last_year + 1):
        fiscalyear = set_fiscalyear_invoice_sequences(
            create_fiscalyear(company, (datetime.date(year, 1, 1), datetime.date(year, 12, 31)))
        )
        fiscalyear.click("create_period")
    term = create_payment_term()
    term.save()


if __name__ == "__main__":
    conf, db, first, last = sys.argv[1:5]
    build(conf, db, int(first), int(last))
