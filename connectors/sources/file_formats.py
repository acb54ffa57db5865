"""Readers for exported files: CSV (one claim per row), JSON Lines (one entity per line) and
China e-invoice XML (数电票, one ``<EInvoice>`` per invoice, any number per file).

Each reader streams its file and yields :class:`Entry` items: where the entity is (file and line,
or file and entry number), its payload for the shared models, or the reason it could not even be
parsed. Encodings: UTF-8 with or without BOM, and GBK/GB18030 (CSV, JSONL: detected; XML: as
its declaration says).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

# Column names as upstream systems export them (English and Chinese) -> our field names.
HEADER_ALIASES: dict[str, str] = {
    "claim_id": "claim_id", "报销单号": "claim_id", "单据编号": "claim_id",
    "employee_id": "employee_id", "工号": "employee_id", "员工编号": "employee_id",
    "employee_name": "employee_name", "姓名": "employee_name", "员工姓名": "employee_name",
    "department": "department", "部门": "department", "cost_centre": "cost_centre",
    "成本中心": "cost_centre", "project": "project", "项目": "project",
    "purpose": "purpose", "事由": "purpose",
    "expense_date": "expense_date", "日期": "expense_date", "费用日期": "expense_date",
    "category": "category", "费用类别": "category", "类别": "category",
    "description": "description", "摘要": "description", "说明": "description",
    "amount": "amount", "金额": "amount", "currency": "currency", "币种": "currency",
    "invoice_refs": "invoice_refs", "发票号码": "invoice_refs",
}  # fmt: skip
REQUIRED_COLUMNS = ("claim_id", "amount")
_LINE_FIELDS = ("category", "description", "amount", "currency", "expense_date")


class FileFormatError(ValueError):
    """The file as a whole cannot be read (encoding, missing columns, not XML)."""


@dataclass(frozen=True)
class Entry:
    location: dict[str, str]
    payload: dict[str, Any] | None
    raw: bytes
    problems: list[str] = field(default_factory=list)


def detect_encoding(head: bytes, complete: bool, name: str) -> str:
    # An incremental decoder does not fail on a multi-byte character cut by the probe window.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
            return encoding
        except UnicodeDecodeError:
            continue
    raise FileFormatError(f"{name}: neither UTF-8 nor GBK text")


def open_text(path: Path) -> io.TextIOWrapper:
    """UTF-8 (with or without BOM), else GBK (GB18030), as exported by Chinese finance software."""
    with path.open("rb") as probe:
        head = probe.read(64 * 1024)
        complete = not probe.read(1)
    return open(path, encoding=detect_encoding(head, complete, path.name), newline="")


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """CSV: yield (line number, row with canonical field names)."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(f"{path.name}: empty file") from None
        names = [HEADER_ALIASES.get(column.strip().lower(), HEADER_ALIASES.get(column.strip(), ""))
                 for column in header]  # fmt: skip
        missing = [column for column in REQUIRED_COLUMNS if column not in names]
        if missing:
            raise FileFormatError(f"{path.name}: missing column(s) {missing}; header was {header}")
        for values in reader:
            if not any(value.strip() for value in values):
                continue
            row = {name: value for name, value in zip(names, values, strict=False) if name}
            if len(values) != len(header):
                row["_column_count"] = f"{len(values)} values for {len(header)} columns"
            yield reader.line_num, row


def claim_payload(row: dict[str, str]) -> dict[str, Any]:
    """A flat CSV row (one claim, one line) as the nested claim payload the models expect."""
    line: dict[str, Any] = {name: row[name] for name in _LINE_FIELDS if row.get(name)}
    line["invoice_refs"] = (row.get("invoice_refs") or "").replace(",", " ").split()
    claim = {k: v for k, v in row.items() if k not in _LINE_FIELDS and v and k != "_column_count"}
    return {**claim, "lines": [line]}


def csv_entries(path: Path) -> Iterator[Entry]:
    for line, row in read_rows(path):
        problems = [f"row: {row.pop('_column_count')}"] if "_column_count" in row else []
        yield Entry({"file": path.name, "line": str(line)}, claim_payload(row),
                    json.dumps(row, ensure_ascii=False).encode(), problems)  # fmt: skip


def jsonl_entries(path: Path) -> Iterator[Entry]:
    with open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            location = {"file": path.name, "line": str(number)}
            try:
                payload = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Entry(location, None, text.encode(), [f"line: not JSON: {exc}"])
                continue
            if not isinstance(payload, dict):
                yield Entry(location, None, text.encode(), ["line: expected a JSON object"])
                continue
            yield Entry(location, payload, text.encode())


# 数电票 XML element names (local names; namespaces are ignored) -> Invoice payload fields.
_EINVOICE_FIELDS = {
    "invoice_number": ("TaxSupervisionInfo/InvoiceNumber", "BasicInformation/InvoiceNumber"),
    "issue_date": ("TaxSupervisionInfo/IssueTime", "BasicInformation/IssueTime"),
    "invoice_type": ("BasicInformation/InvoiceType", "BasicInformation/LabelName"),
    "seller_tax_id": ("SellerInformation/SellerIdNum",),
    "seller_name": ("SellerInformation/SellerName",),
    "buyer_tax_id": ("BuyerInformation/BuyerIdNum",),
    "buyer_name": ("BuyerInformation/BuyerName",),
    "amount_net": ("BasicInformation/TotalAmWithoutTax",),
    "tax_amount": ("BasicInformation/TotalTaxAm",),
    "total": ("BasicInformation/TotalTax-includedAmount",),
}
_EINVOICE_LINE_FIELDS = {"name": "ItemName", "specification": "SpecMod", "unit": "MeaUnits",
                         "quantity": "Quantity", "unit_price": "UnPrice", "amount_net": "Amount",
                         "tax_rate": "TaxRate", "tax_amount": "ComTaxAm"}  # fmt: skip


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _find(element: ET.Element, path: str) -> ET.Element | None:
    """The first descendant along ``path`` of local names ("A/B": a B inside the first A)."""
    current = element
    for step in path.split("/"):
        found = next((child for child in current.iter() if _local(child.tag) == step), None)
        if found is None:
            return None
        current = found
    return current


def _text(element: ET.Element, path: str) -> str | None:
    found = _find(element, path)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def einvoice_payload(element: ET.Element) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for name, paths in _EINVOICE_FIELDS.items():
        value = next((v for v in (_text(element, p) for p in paths) if v), None)
        if value is not None:
            payload[name] = value
    if "issue_date" in payload:  # IssueTime is "2026-11-02 10:30:00"
        payload["issue_date"] = str(payload["issue_date"]).split(" ")[0].split("T")[0]
    if "invoice_type" not in payload and len(payload.get("invoice_number", "")) == 20:
        payload["invoice_type"] = "DIGITAL_GENERAL"
    payload["lines"] = [
        {name: child_text for name, tag in _EINVOICE_LINE_FIELDS.items()
         if (child_text := _text(item, tag)) is not None}
        for item in element.iter() if _local(item.tag) == "IssuItemInformation"
    ]  # fmt: skip
    return payload


_DECLARED = re.compile(r"""^(\ufeff?\s*<\?xml[^>]*?encoding\s*=\s*["'])([A-Za-z0-9_.:-]+)(["'])""")


def _utf8_chunks(path: Path, size: int = 1 << 16) -> Iterator[bytes]:
    """The file as UTF-8, whatever its declared encoding (expat reads no GBK): streamed."""
    with path.open("rb") as handle:
        head = handle.read(size)
        declared = _DECLARED.match(head[:400].decode("latin-1"))
        encoding = declared.group(2) if declared else "utf-8"
        try:
            decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        except LookupError:
            raise FileFormatError(f"{path.name}: unknown encoding {encoding!r}") from None
        try:
            text = decoder.decode(head, final=False)
            if declared:  # the bytes we hand on are UTF-8 now: say so
                text = _DECLARED.sub(lambda m: f"{m.group(1)}UTF-8{m.group(3)}", text, count=1)
            yield text.encode("utf-8")
            while chunk := handle.read(size):
                yield decoder.decode(chunk, final=False).encode("utf-8")
            yield decoder.decode(b"", final=True).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{path.name}: not {encoding} text: {exc}") from exc


def einvoice_entries(path: Path) -> Iterator[Entry]:
    number = 0
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
    try:
        for chunk in _utf8_chunks(path):
            parser.feed(chunk)
            # "end" events carry the element that just closed
            for _, element in cast(Iterator[tuple[str, ET.Element]], parser.read_events()):
                if _local(element.tag) != "EInvoice":
                    continue
                number += 1
                raw = ET.tostring(element, encoding="utf-8")
                location = {"file": path.name, "entry": str(number)}
                yield Entry(location, einvoice_payload(element), raw)
                element.clear()
        parser.close()
    except ET.ParseError as exc:
        raise FileFormatError(f"{path.name}: not well-formed XML: {exc}") from exc
    if number == 0:
        raise FileFormatError(f"{path.name}: no <EInvoice> element")


def entries(path: Path, kind: str) -> Iterator[Entry]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if kind != "claims":
            raise FileFormatError("CSV exports carry claims; use JSON Lines for other kinds")
        return csv_entries(path)
    if suffix in (".jsonl", ".ndjson"):
        return jsonl_entries(path)
    if suffix == ".xml":
        if kind != "invoices":
            raise FileFormatError("XML files are read as e-invoices (--kind invoices)")
        return einvoice_entries(path)
    raise FileFormatError(f"{path.name}: unknown format (expected .csv, .jsonl or .xml)")


def kind_for(path: Path, kind: str | None) -> str:
    return kind or ("invoices" if path.suffix.lower() == ".xml" else "claims")
