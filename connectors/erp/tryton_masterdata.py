"""The master data the processors map, read from Tryton over JSON-RPC.

- **Employees** (``company.employee`` of the login's company, left ones included): the key is
  the employee's party code (the code claims name the employee by, and the party the sink books
  on), the value the party's code and name, and ``left_on`` once the employee has an end date.
  An employee whose party has no code cannot be mapped: it is reported as skipped.
- **Exchange rates** (``currency.currency.rate``): Tryton keeps every currency's rate against
  one base, so the company currency per unit of X on a day is the company currency's rate of
  that day (its latest on or before it) divided by X's. Without a rate of the company currency
  no rate can be read, and the rates are left out whole (reported as skipped) rather than
  guessed.

- **Departments and cost centres**: Tryton keeps them as analytic accounts
  (``analytic_account.account``, module ``analytic_account``). The normal accounts under the
  analytic root coded ``department_root`` (default ``DEPT``) are departments, those under
  ``cost_centre_root`` (``CC``) cost centres: the key and ``erp_code`` are the account's code,
  ``name`` its name; a closed account is no longer listed. A Tryton without the module, or
  without such a root, does not cover that kind (the report says so), and files keep it.
- **Budgets**: the lines of Tryton's analytic budgets (``analytic_account.budget``, module
  ``analytic_budget``) on the cost-centre root's accounts, one entry per cost centre and budget
  period (``erpbridge.reference.budget_key``): the amount allocated, the period's end, the
  budget's name. Read, not yet enforced.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connectors.erp.base import MasterData
from connectors.erp.tryton_rpc import TrytonRpc
from erpbridge.reference import budget_key, code_key, input_vat_key, rate_key

RATE_PLACES = Decimal("0.000001")  # Tryton keeps rates to 6 places


def read_master_data(rpc: TrytonRpc, company: int, analytic_roots: Mapping[str, str],
                     input_vat_account: str) -> MasterData:  # fmt: skip
    """``analytic_roots``: kind (department, cost_centre) -> the code of its analytic root;
    ``input_vat_account``: the code of the account deductible input VAT is booked on."""
    employees, skipped = _employees(rpc, company)
    rates, rates_skipped = _rates(rpc, company)
    kinds = {"employee"} | ({"rate"} if not rates_skipped else set())
    codes, code_kinds, codes_skipped = _analytic(rpc, company, analytic_roots)
    budgets, budget_kinds = _budgets(rpc, company, analytic_roots.get("cost_centre"))
    categories, category_kinds, categories_skipped = _categories(rpc, company)
    taxes, tax_kinds, taxes_skipped = _input_vat_taxes(rpc, company, input_vat_account)
    return MasterData(frozenset(kinds | code_kinds | budget_kinds | category_kinds | tax_kinds),
                      {**employees, **rates, **codes, **budgets, **categories, **taxes},
                      (*skipped, *rates_skipped, *codes_skipped, *categories_skipped,
                       *taxes_skipped))  # fmt: skip


def _employees(rpc: TrytonRpc, company: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    found = rpc.call("model.company.employee.search_read", [("company", "=", company)], 0, None,
                     [("id", "ASC")], ["party.code", "party.name", "end_date"],
                     context={"active_test": False})  # fmt: skip
    entries: dict[str, dict[str, Any]] = {}
    skipped = []
    for employee in found:
        party = employee.get("party.") or {}
        code = str(party.get("code") or "").strip()
        ref = f"company.employee,{employee['id']}"
        if not code:
            skipped.append(f"{ref}: its party {party.get('name')!r} has no code")
            continue
        value: dict[str, Any] = {"party": code, "name": str(party.get("name") or ""),
                                 "source_ref": ref}  # fmt: skip
        if employee.get("end_date"):
            value["left_on"] = employee["end_date"].isoformat()
        entries[code_key("employee", code)] = value
    return entries, skipped


def _rates(rpc: TrytonRpc, company: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    (own,) = rpc.call("model.company.company.read", [company], ["currency.code"])
    home = str(own["currency."]["code"])
    order = [("date", "ASC"), ("id", "ASC")]
    found = rpc.call("model.currency.currency.rate.search_read", [], 0, None, order,
                     ["currency.code", "date", "rate"])  # fmt: skip
    by_currency: dict[str, list[tuple[datetime.date, Decimal, int]]] = {}
    for rate in found:
        code = str(rate["currency."]["code"])
        by_currency.setdefault(code, []).append((rate["date"], Decimal(rate["rate"]), rate["id"]))
    home_rates = by_currency.pop(home, [])
    if not home_rates:
        if not by_currency:
            return {}, []
        return {}, [f"currency rates: the company currency {home} has no rate in Tryton, so no "
                    "other currency's rate against it can be read"]  # fmt: skip
    home_days = [day for day, _, _ in home_rates]
    entries: dict[str, dict[str, Any]] = {}
    skipped = []
    for code, rates in sorted(by_currency.items()):
        for day, rate, rate_id in rates:
            at = bisect.bisect_right(home_days, day)
            if at == 0 or rate <= 0:
                skipped.append(f"currency.currency.rate,{rate_id}: {code} on {day} has no "
                               f"{home} rate on or before it" if at == 0 else
                               f"currency.currency.rate,{rate_id}: {code} rate {rate} is not "
                               "positive")  # fmt: skip
                continue
            company_per_unit = (home_rates[at - 1][1] / rate).quantize(RATE_PLACES)
            entries[rate_key(code, day)] = {
                "rate": str(company_per_unit),
                "source_ref": f"currency.currency.rate,{rate_id}",
            }
    return entries, skipped


def _analytic(rpc: TrytonRpc, company: int, roots: Mapping[str, str],
              ) -> tuple[dict[str, dict[str, Any]], set[str], list[str]]:  # fmt: skip
    if not _has_model(rpc, "analytic_account.account"):
        return {}, set(), ["departments and cost centres: this Tryton runs no analytic_account "
                           "module; they stay with the reference files"]  # fmt: skip
    found = rpc.call("model.analytic_account.account.search_read", [("company", "=", company)],
                     0, None, [("id", "ASC")], ["code", "name", "type", "state", "root.code"],
                     context={"active_test": False})  # fmt: skip
    root_codes = {a["code"] for a in found if a["type"] == "root"}
    entries: dict[str, dict[str, Any]] = {}
    kinds, skipped = set(), []
    for kind, root in roots.items():
        if root not in root_codes:
            skipped.append(f"{kind.replace('_', ' ')}s: no analytic root coded {root!r} in "
                           "Tryton; they stay with the reference files")  # fmt: skip
            continue
        kinds.add(kind)
        for account in found:
            if account["type"] != "normal" or (account.get("root.") or {}).get("code") != root:
                continue
            ref = f"analytic_account.account,{account['id']}"
            if not account.get("code"):
                skipped.append(f"{ref}: the {kind.replace('_', ' ')} {account['name']!r} has no "
                               "code")  # fmt: skip
            elif account.get("state") != "closed":
                entries[code_key(kind, account["code"])] = {
                    "erp_code": account["code"],
                    "name": account["name"],
                    "source_ref": ref,
                }
    return entries, kinds, skipped


def _budgets(rpc: TrytonRpc, company: int,
             root: str | None) -> tuple[dict[str, dict[str, Any]], set[str]]:  # fmt: skip
    if root is None or not _has_model(rpc, "analytic_account.budget.line"):
        return {}, set()
    found = rpc.call("model.analytic_account.budget.line.search_read",
                     [("budget.company", "=", company), ("account", "!=", None),
                      ("budget.root.code", "=", root)], 0, None, [("id", "ASC")],
                     ["amount", "account.code", "budget.start_date", "budget.end_date",
                      "budget.name"])  # fmt: skip
    entries: dict[str, dict[str, Any]] = {}
    for line in found:
        code, budget = (line.get("account.") or {}).get("code"), line.get("budget.") or {}
        if not code or line.get("amount") is None:
            continue
        entries[budget_key(code, budget["start_date"])] = {
            "cost_centre": code, "amount": str(line["amount"]),
            "end": budget["end_date"].isoformat(), "name": budget.get("name") or "",
            "source_ref": f"analytic_account.budget.line,{line['id']}"}  # fmt: skip
    return entries, {"budget"}


def _categories(rpc: TrytonRpc, company: int,
                ) -> tuple[dict[str, dict[str, Any]], set[str], list[str]]:  # fmt: skip
    if not _has_model(rpc, "product.category.account"):
        return {}, set(), ["expense categories: this Tryton runs no account_product module; "
                           "their accounts stay with the settings and reference files"]  # fmt: skip
    found = rpc.call("model.product.category.search_read", [("accounting", "=", True)], 0, None,
                     [("id", "ASC")], ["code", "name", "parent", "account_parent",
                                       "account_expense.code"],
                     context={"company": company})  # fmt: skip
    by_id = {category["id"]: category for category in found}
    entries: dict[str, dict[str, Any]] = {}
    skipped = []
    for category in found:
        ref = f"product.category,{category['id']}"
        code = str(category.get("code") or "").strip()
        account = _expense_account(category, by_id)
        if not code:
            skipped.append(f"{ref}: the expense category {category['name']!r} has no code")
        elif not account:
            skipped.append(f"{ref}: the expense category {code} has no expense account")
        else:
            entries[code_key("category", code)] = {"account": account,
                                                   "name": str(category.get("name") or ""),
                                                   "source_ref": ref}  # fmt: skip
    return entries, {"category"}, skipped


def _expense_account(category: Mapping[str, Any],
                     by_id: Mapping[int, Mapping[str, Any]]) -> str | None:  # fmt: skip
    """The category's expense account code, or its parent's where it uses the parent's."""
    seen: set[int] = set()
    while category.get("account_parent") and category.get("parent") in by_id:
        if category["id"] in seen:
            return None  # Tryton forbids the loop; never follow one
        seen.add(category["id"])
        category = by_id[category["parent"]]
    return (category.get("account_expense.") or {}).get("code") or None


def _input_vat_taxes(rpc: TrytonRpc, company: int, account: str,
                     ) -> tuple[dict[str, dict[str, Any]], set[str], list[str]]:  # fmt: skip
    domain = [("code", "=", account), ("company", "=", company)]
    accounts = rpc.call("model.account.account.search", domain, 0, 1, None)
    if not accounts:
        return {}, set(), [f"input VAT taxes: no account {account} in Tryton (the input VAT "
                           "account the ERP writer books on); no rate is checked"]  # fmt: skip
    entries: dict[str, dict[str, Any]] = {}
    for tax in input_vat_taxes(rpc, accounts[0]):
        key = input_vat_key(Decimal(tax["rate"]))
        entries.setdefault(key, {"tax": str(tax.get("name") or ""), "account": account,
                                 "source_ref": f"account.tax,{tax['id']}"})  # fmt: skip
    return entries, {"input_vat"}, []


def input_vat_taxes(rpc: TrytonRpc, account: int) -> list[dict[str, Any]]:
    """The active percentage taxes on the input VAT account (its id), oldest first: id, rate
    and name. The writer books by them; the sync lists them."""
    return list(rpc.call("model.account.tax.search_read",
                         [("invoice_account", "=", account), ("type", "=", "percentage")], 0,
                         None, [("id", "ASC")], ["rate", "name"]))  # fmt: skip


def _has_model(rpc: TrytonRpc, model: str) -> bool:
    """Does this Tryton run the module that defines ``model``?"""
    return bool(rpc.call("model.ir.model.search", [("name", "=", model)], 0, 1, None))
