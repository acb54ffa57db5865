"""Readers for exported files: CSV (one claim per row), JSON Lines (one entity per line) and
China e-invoice XML (数电票, one ``<EInvoice>`` per invoice, any number per file).

Each reader streams its file and yields :class:`Entry` items: where the entity is (file and line,
or file and entry number), its payload for the shared models, or the reasons it could not even
be parsed. CSV and JSON Lines are decoded line by line (UTF-8 with or without BOM, else
GBK/GB18030, see :func:`choose_encoding`): a line that does not decode, is too long, or holds
something the boundary refuses (:mod:`erpbridge.boundary`) is an entry with its
problem and raw bytes, and the rest of the file goes on. XML is decoded as its declaration says.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from erpbridge.boundary import LIMITS, InputLimits, InputRefused, parse_json

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


def choose_encoding(path: Path) -> str:
    """The file's encoding, from its BOM, else from its lines: UTF-8 when most of the lines that
    are not plain ASCII are valid UTF-8 (one stray byte from another code page does not turn a
    UTF-8 file into GBK: that line alone is refused), else GB18030 (GBK's superset), as Chinese
    finance software exports. Streamed: memory stays bounded by one line."""
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise FileFormatError(f"{path.name}: UTF-16 text; export it as UTF-8 or GBK")
        handle.seek(0)
        utf8 = other = 0
        while line := handle.readline(1 << 20):
            if line.isascii():
                continue
            try:
                line.decode("utf-8")
                utf8 += 1
            except UnicodeDecodeError:
                other += 1
        return "utf-8" if utf8 >= other else "gb18030"


@dataclass
class Line:
    number: int  # 1-based, physical
    raw: bytes
    text: str | None  # None: not text in the file's encoding, or too long
    problem: str | None = None


def read_lines(path: Path, limits: InputLimits = LIMITS) -> Iterator[Line]:
    """The file's lines, each decoded on its own: a line that does not decode (or is longer than
    ``max_line_bytes``) comes with its problem and raw bytes, and the next line goes on.
    Characters are never replaced."""
    encoding = choose_encoding(path)
    cap = limits.max_line_bytes
    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(cap + 1):
            number += 1
            if len(raw) > cap and not raw.endswith(b"\n"):
                while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # the rest of the line: skipped, not kept in memory
                yield Line(number, raw[:200], None, f"line: longer than {cap} bytes")
                continue
            if number == 1 and encoding == "utf-8-sig":
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield Line(number, raw, raw.decode(encoding.replace("-sig", "")))
            except UnicodeDecodeError as exc:
                yield Line(number, raw, None,
                           f"line: not {encoding.removesuffix('-sig')} text: bytes "
                           f"{raw[exc.start:exc.end]!r} at column {exc.start + 1}")  # fmt: skip


def _canonical(header: list[str], name: str) -> list[str]:
    names = [HEADER_ALIASES.get(column.strip().lower(), HEADER_ALIASES.get(column.strip(), ""))
             for column in header]  # fmt: skip
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        raise FileFormatError(f"{name}: missing column(s) {missing}; header was {header}")
    return names


def csv_entries(path: Path, limits: InputLimits = LIMITS) -> Iterator[Entry]:
    """CSV: one claim per record. A record that does not decode, holds a field over
    ``max_field_chars`` or is not well-formed CSV is refused with its line; the rest goes on."""
    csv.field_size_limit(limits.max_field_chars)
    bad: list[Line] = []
    taken: list[Line] = []  # the lines of the record being read

    def texts() -> Iterator[str]:
        for line in read_lines(path, limits):
            if line.text is None:
                bad.append(line)
                continue
            taken.append(line)
            yield line.text

    reader = csv.reader(texts())
    names: list[str] | None = None
    header: list[str] = []
    while True:
        try:
            values = next(reader)
            error = None
        except StopIteration:
            break
        except csv.Error as exc:
            values, error = [], f"row: not well-formed CSV: {exc}"
        lines, taken[:] = list(taken), []
        for line in bad:
            yield Entry(_where(path, line.number), None, line.raw, [line.problem or "line"])
        bad.clear()
        if names is None:
            if error:
                raise FileFormatError(f"{path.name}: the header is not CSV: {error}")
            header, names = values, _canonical(values, path.name)
            continue
        raw = b"".join(line.raw for line in lines)
        where = _where(path, lines[0].number if lines else 0)
        if error:
            yield Entry(where, None, raw, [error])
            continue
        if not any(value.strip() for value in values):
            continue
        row = {name: value for name, value in zip(names, values, strict=False) if name}
        problems = [] if len(values) == len(header) else [
            f"row: {len(values)} values for {len(header)} columns"]  # fmt: skip
        yield Entry(where, claim_payload(row), json.dumps(row, ensure_ascii=False).encode(),
                    problems)  # fmt: skip
    for line in bad:
        yield Entry(_where(path, line.number), None, line.raw, [line.problem or "line"])
    if names is None:
        raise FileFormatError(f"{path.name}: empty file")


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """CSV: (line number, row with canonical field names) of every readable record."""
    for entry in csv_entries(path):
        if entry.payload is not None:
            yield int(entry.location["line"]), json.loads(entry.raw)


def _where(path: Path, line: int) -> dict[str, str]:
    return {"file": path.name, "line": str(line)}


def claim_payload(row: dict[str, str]) -> dict[str, Any]:
    """A flat CSV row (one claim, one line) as the nested claim payload the models expect."""
    line: dict[str, Any] = {name: row[name] for name in _LINE_FIELDS if row.get(name)}
    line["invoice_refs"] = (row.get("invoice_refs") or "").replace(",", " ").split()
    claim = {k: v for k, v in row.items() if k not in _LINE_FIELDS and v}
    return {**claim, "lines": [line]}


def jsonl_entries(path: Path, limits: InputLimits = LIMITS) -> Iterator[Entry]:
    for line in read_lines(path, limits):
        location = _where(path, line.number)
        if line.text is None:
            yield Entry(location, None, line.raw, [line.problem or "line"])
            continue
        if not line.text.strip():
            continue
        try:
            payload = parse_json(line.text, limits)
        except InputRefused as exc:
            yield Entry(location, None, line.raw, [f"line: {exc.message}"])
            continue
        if not isinstance(payload, dict):
            yield Entry(location, None, line.raw, ["line: expected a JSON object"])
            continue
        yield Entry(location, payload, line.raw)


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
    "platform_status": ("BasicInformation/InvoiceStatus",),
    "red_of": ("RedInvoiceInformation/BlueInvoiceNumber", "BasicInformation/BlueInvoiceNumber"),
}
# The passenger-transport block of a ticket (铁路电子客票, 航空运输电子客票行程单).
_EINVOICE_PASSENGER_FIELDS = {
    "traveller_name": "TravellerName", "traveller_id_masked": "TravellerIdNum",
    "travel_date": "TravelDate", "departure": "DeparturePlace", "destination": "DestinationPlace",
    "carrier_number": "CarrierNumber", "seat_class": "SeatClass", "fare": "Fare",
    "fuel_surcharge": "FuelSurcharge", "development_fund": "CivilAviationDevelopmentFund",
    "stated_vat": "VatAmount",
}  # fmt: skip
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
    passenger = _find(element, "PassengerTransportInformation")
    if passenger is not None:
        payload["passenger"] = {name: child_text for name, tag in _EINVOICE_PASSENGER_FIELDS.items()
                                if (child_text := _text(passenger, tag)) is not None}  # fmt: skip
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


def einvoice_entries(path: Path, limits: InputLimits = LIMITS) -> Iterator[Entry]:
    number = depth = 0
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    try:
        for chunk in _utf8_chunks(path):
            parser.feed(chunk)
            # "end" events carry the element that just closed
            events = cast(Iterator[tuple[str, ET.Element]], parser.read_events())
            for event, element in events:
                if event == "start":
                    depth += 1
                    if depth > limits.max_depth:
                        raise FileFormatError(f"{path.name}: XML nested deeper than "
                                              f"{limits.max_depth}")  # fmt: skip
                    continue
                depth -= 1
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
    """The file's entries; raises :class:`FileFormatError` when the file as a whole cannot be
    read (before or while reading: entries already read stay good)."""
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
