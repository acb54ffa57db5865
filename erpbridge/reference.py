"""Reference data: exchange rates, the code mappings (employee, department, cost centre, expense
category), budgets and the ERP's input VAT taxes.

It lives in one compacted topic, ``<prefix>.reference``, one record per entry:

=========================  ==============================================================
key                        value (JSON)
=========================  ==============================================================
``rate:USD:2026-11-12``    ``{"rate": "7.1187"}``: company currency per 1 USD on that day
``employee:E1001``         ``{"party": "E1001", "department": "D10", "cost_centre": "CC01",
                           "name": "张三", "id_masked": "3101**********1234"}`` (name and
                           masked ID: optional, to know a ticket's traveller)
``department:D10``         ``{"erp_code": "SALES", "name": "华东销售部"}`` (name: optional; a
                           posting names its department by the entry of its ERP code)
``cost_centre:CC01``       ``{"erp_code": "CC-SH-01", "name": "..."}``
``company:91310000...``    ``{"name": "..."}``: a taxpayer id (统一社会信用代码) of the company
                           itself: VAT invoices and tickets issued to it deduct input VAT
``budget:CC-SH-01:2026-01-01``  ``{"amount": "50000.00", "end": "2026-12-31", "name": "..."}``:
                           a cost centre's (ERP code) budget from that day to ``end``, in the
                           company currency (read from the ERP; see streams.budget_case)
``category:TRAVEL``        ``{"account": "6602.01", "name": "差旅费"}``: the expense account a
                           claim line of this category (case aside) is booked on; before the
                           ``posting_category_accounts`` setting and the default account
``input_vat:0.09``         ``{"tax": "进项税额 9%", "account": "1.4.4"}``: the ERP has a tax
                           to book deductible input VAT at this rate; once any such entry is
                           known, a claim deducting VAT at a rate without one is refused
                           ``no_input_vat_tax`` (nothing is sent the ERP would refuse)
=========================  ==============================================================

An entry synced from the ERP (``erpbridge source masterdata``) also says where it came from:
``"source": "tryton"`` and ``"source_ref": "company.employee,12"``; an employee who left has
``"left_on": "2026-11-30"`` (their last day), and their claims submitted after it are refused.

A tombstone (null value) removes an entry; a worker that saw an employee's tombstone says so
when refusing their claims (until compaction drops the tombstone). Writers (``erpbridge reference
load``, ``erpbridge source masterdata``) and readers (every stream worker keeps the whole topic
in memory) share this module's key format.
"""

from __future__ import annotations

import bisect
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

KINDS = ("rate", "employee", "department", "cost_centre", "company", "budget", "category",
         "input_vat")  # fmt: skip
CODE_KINDS = ("employee", "department", "cost_centre", "company", "category")


class BadReferenceEntry(ValueError):
    """A reference record that cannot be used (bad key or value)."""


def rate_key(currency: str, day: datetime.date) -> str:
    return f"rate:{currency.upper()}:{day.isoformat()}"


def code_key(kind: str, code: str) -> str:
    if kind not in CODE_KINDS:
        raise BadReferenceEntry(f"unknown reference kind {kind!r}; expected one of {CODE_KINDS}")
    return f"{kind}:{code.strip().upper()}"


def input_vat_key(rate: Decimal) -> str:
    """``input_vat:0.09``: the rate as a fraction, without trailing zeros."""
    return f"input_vat:{_fraction(rate):f}"


def input_vat_rate(text: str) -> Decimal:
    """An input VAT rate as written (``0.0900``), checked: a fraction in [0, 1)."""
    try:
        rate = _fraction(Decimal(text))
    except InvalidOperation as exc:
        raise BadReferenceEntry(f"tax rate {text!r} is no number") from exc
    if not Decimal(0) <= rate < Decimal(1):
        raise BadReferenceEntry(f"tax rate {text!r} must be a fraction in [0, 1): 0.09 for 9%")
    return rate


def _fraction(rate: Decimal) -> Decimal:
    normal = rate.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral() else normal


def budget_key(cost_centre: str, start: datetime.date) -> str:
    return f"budget:{cost_centre.strip().upper()}:{start.isoformat()}"


@dataclass(frozen=True)
class Budget:
    """A cost centre's budget for a period (both days included), in the company currency."""

    cost_centre: str
    start: datetime.date
    end: datetime.date
    amount: Decimal
    name: str = ""

    def amount_minor(self, exponent: int) -> int:
        """The amount in the currency's minor units (fen for CNY: ``exponent`` 2)."""
        return int(self.amount.scaleb(exponent).to_integral_value())


@dataclass(frozen=True)
class EmployeeMapping:
    party: str
    department: str | None = None
    cost_centre: str | None = None
    name: str | None = None
    id_masked: str | None = None  # the ID number as tickets print it: never the full number
    left_on: datetime.date | None = None  # their last day with the company


def person_name(text: str) -> str:
    """A name as compared: without spaces ("赵 敏" on a claim is 赵敏 on a ticket)."""
    return "".join(text.split())


def same_person(id_a: str | None, id_b: str | None) -> bool:
    """Two masked ID numbers can be one person's: unknown on either side, or of one length with
    every character both show equal."""
    if not id_a or not id_b:
        return True
    return len(id_a) == len(id_b) and all(
        a == b or "*" in (a, b) for a, b in zip(id_a.upper(), id_b.upper(), strict=True)
    )


@dataclass
class ReferenceData:
    """The in-memory view of the reference topic. ``apply`` each record in offset order."""

    rate_max_age_days: int = 7
    _rates: dict[str, dict[datetime.date, Decimal]] = field(default_factory=dict)
    _rate_days: dict[str, list[datetime.date]] = field(default_factory=dict)
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _names: dict[str, set[str]] = field(default_factory=dict)  # employee name -> their keys
    _company_ids: frozenset[str] = frozenset()  # kept as entries come: read at every posting
    _removed: set[str] = field(default_factory=set)  # keys a tombstone removed
    _budgets: dict[str, dict[datetime.date, Budget]] = field(default_factory=dict)
    _input_vat: dict[Decimal, dict[str, Any]] = field(default_factory=dict)  # rate -> its tax

    def apply(self, key: str, value: bytes | Mapping[str, Any] | None) -> None:
        kind, _, rest = key.partition(":")
        if kind not in KINDS or not rest:
            raise BadReferenceEntry(f"unknown reference key {key!r}")
        data = json.loads(value) if isinstance(value, bytes | bytearray) else value
        if kind == "rate":
            self._apply_rate(rest, data)
            return
        if kind == "budget":
            self._apply_budget(rest, data)
            return
        if kind == "input_vat":
            self._apply_input_vat(rest, data)
            return
        if kind == "category" and data is not None and not str(data.get("account") or ""):
            raise BadReferenceEntry(f"{key}: no account")
        if kind == "employee" and data is not None and data.get("left_on") is not None:
            try:
                datetime.date.fromisoformat(data["left_on"])
            except (TypeError, ValueError) as exc:
                raise BadReferenceEntry(f"{key}: left_on {data['left_on']!r} is no date") from exc
        old = self._codes.pop(key, None)
        if old and old.get("name"):
            self._names.get(person_name(old["name"]), set()).discard(key)
        if data is None:
            if old is not None:
                self._removed.add(key)
        else:
            self._removed.discard(key)
            self._codes[key] = dict(data)
            if kind == "employee" and data.get("name"):  # a company's name is no traveller's
                self._names.setdefault(person_name(str(data["name"])), set()).add(key)
        if kind == "company":
            self._company_ids = (self._company_ids | {rest} if data is not None
                                 else self._company_ids - {rest})  # fmt: skip

    def _apply_rate(self, rest: str, data: Mapping[str, Any] | None) -> None:
        currency, _, day_text = rest.partition(":")
        try:
            day = datetime.date.fromisoformat(day_text)
            rate = None if data is None else Decimal(str(data["rate"]))
        except (ValueError, KeyError, InvalidOperation) as exc:
            raise BadReferenceEntry(f"bad rate entry {rest!r}: {exc}") from exc
        if rate is not None and rate <= 0:
            raise BadReferenceEntry(f"bad rate entry {rest!r}: rate must be positive")
        rates = self._rates.setdefault(currency, {})
        days = self._rate_days.setdefault(currency, [])
        if rate is None:
            if rates.pop(day, None) is not None:
                days.remove(day)
        else:
            if day not in rates:
                bisect.insort(days, day)
            rates[day] = rate

    def _apply_budget(self, rest: str, data: Mapping[str, Any] | None) -> None:
        code, _, start_text = rest.rpartition(":")
        try:
            start = datetime.date.fromisoformat(start_text)
            budget = None if data is None else Budget(
                code, start, datetime.date.fromisoformat(str(data["end"])),
                Decimal(str(data["amount"])), str(data.get("name") or ""))  # fmt: skip
        except (ValueError, KeyError, InvalidOperation) as exc:
            raise BadReferenceEntry(f"bad budget entry {rest!r}: {exc}") from exc
        if not code:
            raise BadReferenceEntry(f"bad budget entry {rest!r}: no cost centre")
        if budget is not None and (budget.amount < 0 or budget.end < start):
            raise BadReferenceEntry(f"bad budget entry {rest!r}: a negative amount or an end "
                                    "before its start")  # fmt: skip
        periods = self._budgets.setdefault(code.strip().upper(), {})
        if budget is None:
            periods.pop(start, None)
        else:
            periods[start] = budget

    def _apply_input_vat(self, rest: str, data: Mapping[str, Any] | None) -> None:
        rate = input_vat_rate(rest)
        if data is None:
            self._input_vat.pop(rate, None)
        else:
            self._input_vat[rate] = dict(data)

    def input_vat_rates(self) -> frozenset[Decimal]:
        """The rates the ERP has an input VAT tax for (empty: none known, nothing checked)."""
        return frozenset(self._input_vat)

    def category_account(self, category: str) -> str | None:
        """The expense account of a claim line's category, as the reference data maps it."""
        data = self._codes.get(code_key("category", category)) if category.strip() else None
        return None if data is None else str(data["account"])

    def budgets(self) -> list[Budget]:
        """Every budget, by cost centre and period start."""
        return [budget for code in sorted(self._budgets)
                for _, budget in sorted(self._budgets[code].items())]  # fmt: skip

    def has_budgets(self) -> bool:
        """Whether any cost centre has a budget (else no claim asks one)."""
        return any(self._budgets.values())

    def budget_from(self, cost_centre: str, start: datetime.date) -> Budget | None:
        """The budget of ``cost_centre`` whose period starts on ``start``."""
        return self._budgets.get(cost_centre.strip().upper(), {}).get(start)

    def budget(self, cost_centre: str, day: datetime.date) -> Budget | None:
        """The budget of ``cost_centre`` (its ERP code) whose period holds ``day``."""
        for budget in self._budgets.get(cost_centre.strip().upper(), {}).values():
            if budget.start <= day <= budget.end:
                return budget
        return None

    def rate(self, currency: str, day: datetime.date) -> tuple[Decimal, datetime.date] | None:
        """The rate of ``day``, else the latest before it within ``rate_max_age_days``
        (weekends and holidays have no fixing), as (rate, the rate's own date)."""
        days = self._rate_days.get(currency, [])
        at = bisect.bisect_right(days, day)
        if at == 0:
            return None
        found = days[at - 1]
        if (day - found).days > self.rate_max_age_days:
            return None
        return self._rates[currency][found], found

    def employee(self, code: str) -> EmployeeMapping | None:
        data = self._codes.get(code_key("employee", code))
        if data is None:
            return None
        left = data.get("left_on")
        left_on = datetime.date.fromisoformat(left) if left else None  # checked by apply
        return EmployeeMapping(str(data.get("party") or code), data.get("department"),
                               data.get("cost_centre"), data.get("name"),
                               data.get("id_masked"), left_on)  # fmt: skip

    def was_removed(self, kind: str, code: str) -> bool:
        """Was this entry removed by a tombstone (and not given again since)?"""
        return code_key(kind, code) in self._removed

    def is_employee(self, name: str, id_masked: str | None) -> bool:
        """Is someone of this name (and masked ID number, when both sides know it) listed?"""
        return any(same_person(id_masked, self._codes[key].get("id_masked"))
                   for key in self._names.get(person_name(name), ()))  # fmt: skip

    def company_tax_ids(self) -> frozenset[str]:
        """The company's own taxpayer ids the reference data lists."""
        return self._company_ids

    def erp_code(self, kind: str, code: str) -> str | None:
        data = self._codes.get(code_key(kind, code))
        return None if data is None else str(data.get("erp_code") or code)

    def name_of(self, kind: str, erp_code: str | None, given: str | None = None) -> str | None:
        """The ERP's name of a department or cost centre: that of the entry keyed by its ERP code
        (as the ERP lists it: ``erpbridge source masterdata``), else of the entry the claim's
        own code mapped through; None when neither has one."""
        for code in (erp_code, given):
            data = self._codes.get(code_key(kind, code)) if code else None
            if data and data.get("name"):
                return str(data["name"])
        return None

    def sizes(self) -> dict[str, int]:
        counts = {kind: 0 for kind in KINDS}
        counts["rate"] = sum(len(days) for days in self._rate_days.values())
        counts["budget"] = sum(len(periods) for periods in self._budgets.values())
        counts["input_vat"] = len(self._input_vat)
        for key in self._codes:
            counts[key.partition(":")[0]] += 1
        return counts
