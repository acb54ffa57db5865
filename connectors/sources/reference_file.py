"""``erpbridge reference load FILE.csv``: publish exchange rates or code mappings.

The kind is told by the header row:

- ``currency,date,rate``                              exchange rates (company currency per unit)
- ``employee_id,party[,department,cost_centre,name,id_masked,left_on]``  employee mapping (name
  and masked ID number: to tell whether a ticket's traveller is an employee; left_on: their last
  day, claims submitted after it are refused)
- ``department,erp_code[,name]`` / ``cost_centre,erp_code[,name]``  department / cost-centre
  mapping
- ``tax_id[,name]``  the company's own taxpayer ids (统一社会信用代码): the buyer an invoice or a
  ticket must name for its input VAT to be deducted
- ``category,account[,name]``  an expense category's account (before the
  ``posting_category_accounts`` setting)
- ``tax_rate[,tax,account]``  a rate the ERP has an input VAT tax for (a fraction: ``0.09``);
  once any is known, a claim deducting VAT at another rate is refused ``no_input_vat_tax``

A file is checked whole before anything is published: one bad row and nothing is sent, with
every bad row named (file:line). Published entries replace earlier ones with the same key.
"""

from __future__ import annotations

import csv
import datetime
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from erpbridge.config import Settings
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.model import CURRENCY_EXPONENTS, valid_uscc
from erpbridge.reference import code_key, input_vat_key, input_vat_rate, rate_key
from erpbridge.topics import Topics


class ReferenceFileError(ValueError):
    """The file cannot be published; the message lists every problem."""


Entry = tuple[str, dict[str, str]]
# kind -> (required columns, optional columns); the master-data sync maps a gateway's lists to
# the same columns (connectors.erp.rest_masterdata)
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rate": (("currency", "date", "rate"), ()),
    "employee": (("employee_id", "party"),
                 ("department", "cost_centre", "name", "id_masked", "left_on")),
    "department": (("department", "erp_code"), ("name",)),
    "cost_centre": (("cost_centre", "erp_code"), ("name",)),
    "company": (("tax_id",), ("name",)),
    "category": (("category", "account"), ("name",)),
    "input_vat": (("tax_rate",), ("tax", "account")),
}  # fmt: skip


def read_reference(path: Path) -> tuple[str, list[Entry]]:
    """(kind, entries) of a reference CSV, or :class:`ReferenceFileError` naming each bad row."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
        header = {name.strip().lower() for name in (rows[0].keys() if rows else [])}
    kind = _kind_of(header, path)
    entries, problems = [], []
    for line, row in enumerate(rows, 2):
        clean = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        try:
            entries.append(entry_of(kind, clean))
        except (ValueError, InvalidOperation, KeyError) as exc:
            problems.append(f"{path.name}:{line}: {exc}")
    if problems:
        raise ReferenceFileError("\n".join(problems))
    return kind, entries


def _kind_of(header: set[str], path: Path) -> str:
    if {"currency", "date", "rate"} <= header:
        return "rate"
    if {"employee_id", "party"} <= header:
        return "employee"
    for kind in ("department", "cost_centre"):
        if {kind, "erp_code"} <= header:
            return kind
    if "tax_id" in header:
        return "company"
    if {"category", "account"} <= header:
        return "category"
    if "tax_rate" in header:
        return "input_vat"
    raise ReferenceFileError(f"{path.name}: header {sorted(header)} is none of: currency,date,"
                             "rate / employee_id,party / department,erp_code / "
                             "cost_centre,erp_code / tax_id / category,account / "
                             "tax_rate")  # fmt: skip


def entry_of(kind: str, row: dict[str, str]) -> Entry:
    """The reference entry of one row in ``kind``'s columns (:data:`COLUMNS`), checked: a
    ValueError says what is wrong with it."""
    if kind == "rate":
        currency = row["currency"].upper()
        if currency not in CURRENCY_EXPONENTS:
            raise ValueError(f"currency {currency!r} is not one we accept")
        rate = Decimal(row["rate"])
        if not rate > 0:
            raise ValueError(f"rate {row['rate']!r} must be a positive number")
        day = datetime.date.fromisoformat(row["date"])
        return rate_key(currency, day), {"rate": str(rate)}
    if kind == "employee":
        if not row["employee_id"] or not row["party"]:
            raise ValueError("employee_id and party are required")
        value = {"party": row["party"]}
        value.update({k: row[k] for k in COLUMNS["employee"][1] if row.get(k)})
        if "left_on" in value:
            value["left_on"] = datetime.date.fromisoformat(value["left_on"]).isoformat()
        if "id_masked" in value and "*" not in value["id_masked"]:
            raise ValueError("id_masked must be masked (e.g. 3101**********1234): full ID "
                             "numbers are not kept")  # fmt: skip
        return code_key("employee", row["employee_id"]), value
    if kind == "company":
        tax_id = row["tax_id"].upper()
        if not valid_uscc(tax_id):
            raise ValueError(f"{row['tax_id']!r} is not a valid unified social credit code")
        return code_key("company", tax_id), {"name": row.get("name") or ""}
    if kind == "category":
        if not row["category"] or not row["account"]:
            raise ValueError("category and account are required")
        value = {"account": row["account"]}
        if row.get("name"):
            value["name"] = row["name"]
        return code_key("category", row["category"]), value
    if kind == "input_vat":
        rate = input_vat_rate(row["tax_rate"])
        return input_vat_key(rate), {k: row[k] for k in ("tax", "account") if row.get(k)}
    if not row[kind] or not row["erp_code"]:
        raise ValueError(f"{kind} and erp_code are required")
    value = {"erp_code": row["erp_code"]}
    if row.get("name"):
        value["name"] = row["name"]
    return code_key(kind, row[kind]), value


def publish_reference(path: Path, settings: Settings) -> tuple[str, int]:
    """Check the file, then publish it (acknowledged); return (kind, entries published)."""
    kind, entries = read_reference(path)
    ensure_topics(settings)
    producer = durable_producer(settings)
    try:
        topic = Topics(settings.topic_prefix).reference
        sent = [producer.send(topic, key=key.encode(), value=json.dumps(value).encode())
                for key, value in entries]  # fmt: skip
        producer.flush()
        for future in sent:
            future.get(timeout=30)  # raises if the broker refused one
    finally:
        producer.close()
    return kind, len(entries)
