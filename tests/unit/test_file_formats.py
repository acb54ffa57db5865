from pathlib import Path

import pytest

from connectors.sources.file_formats import (
    FileFormatError,
    einvoice_entries,
    entries,
    jsonl_entries,
)
from connectors.sources.kinds import KINDS

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "einvoices.xml"


def test_einvoice_xml_becomes_invoice_payloads() -> None:
    first, second = einvoice_entries(SAMPLE)
    assert first.location == {"file": "einvoices.xml", "entry": "1"}
    invoice = KINDS["invoices"].validate(first.payload)
    assert invoice.invoice_number == "24442000000012345678"
    assert invoice.invoice_type == "DIGITAL_SPECIAL"
    assert str(invoice.issue_date) == "2026-11-05"
    assert (str(invoice.amount_net), str(invoice.tax_amount), str(invoice.total)) == (
        "1207.55",
        "72.45",
        "1280.00",
    )
    assert (
        invoice.lines[0].name == "*住宿服务*住宿费" and str(invoice.lines[0].tax_rate) == "0.0600"
    )
    assert b"<InvoiceNumber>24442000000012345678</InvoiceNumber>" in first.raw
    assert second.payload is not None and second.payload["total"] == "107.00"


def test_gbk_xml_with_namespaces_reads_the_same(tmp_path: Path) -> None:
    text = SAMPLE.read_text(encoding="utf-8").replace('encoding="UTF-8"', 'encoding="GBK"')
    text = text.replace("<EInvoices>", '<EInvoices xmlns="urn:example:einvoice">')
    gbk = tmp_path / "gbk.xml"
    gbk.write_bytes(text.encode("gbk"))
    assert [e.payload for e in einvoice_entries(gbk)] == [
        e.payload for e in einvoice_entries(SAMPLE)
    ]


def test_json_lines_report_bad_lines_by_number(tmp_path: Path) -> None:
    path = tmp_path / "approvals.jsonl"
    path.write_text('{"claim_id": "C1"}\n\n{not json\n[1, 2]\n', encoding="utf-8")
    good, bad, wrong = jsonl_entries(path)
    assert good.payload == {"claim_id": "C1"} and good.location["line"] == "1"
    assert bad.location["line"] == "3" and bad.problems[0].startswith("line: not JSON")
    assert wrong.location["line"] == "4" and wrong.problems == ["line: expected a JSON object"]


@pytest.mark.parametrize("name, kind, message", [
    ("a.txt", "claims", "unknown format"),
    ("a.xml", "claims", "read as e-invoices"),
    ("a.csv", "invoices", "CSV exports carry claims"),
])  # fmt: skip
def test_unsupported_combinations_are_file_errors(tmp_path: Path, name, kind, message) -> None:
    path = tmp_path / name
    path.write_text("x", encoding="utf-8")
    with pytest.raises(FileFormatError, match=message):
        entries(path, kind)


def test_xml_without_invoices_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.xml"
    path.write_text("<Root><Other/></Root>", encoding="utf-8")
    with pytest.raises(FileFormatError, match="no <EInvoice> element"):
        list(einvoice_entries(path))
