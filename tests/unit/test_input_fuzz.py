"""Property-based tests of every file reader, the JSON boundary, the models and the signature
headers: whatever bytes arrive, each input is parsed or refused with a reason, never a traceback,
and what the models accept always fits its Avro contract.

Seeded and bounded: ``derandomize=True`` makes every run draw the same cases (a failure replays
as it was); ``ERPBRIDGE_FUZZ_EXAMPLES`` sets the cases per property (default 300).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.sources.file_formats import (
    Entry,
    FileFormatError,
    choose_encoding,
    csv_entries,
    einvoice_entries,
    jsonl_entries,
)
from connectors.sources.kinds import KINDS
from connectors.sources.signatures import SignatureRefused, verify
from erpbridge.boundary import InputRefused, parse_json
from erpbridge.contracts.catalog import contract
from erpbridge.contracts.serde import AvroSerializer
from erpbridge.topics import CONTRACTS
from tests.fakes.registry import MemoryRegistry

EXAMPLES = int(os.environ.get("ERPBRIDGE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

# What hostile and messy exports hold: the classes the issue found, and real-world noise.
HOSTILE_LINES = [
    b"[" * 3000 + b"]" * 3000,
    b'{"claim_id": "C1", "amount": ' + b"9" * 5000 + b"}",
    b'{"amount": "12.34", "amount": "99999.00"}',
    b'{"claim_id": "\\ud800"}',
    b'{"claim_id": "a\\u200bb", "x": NaN}',
    "中文,张伟".encode("gbk"),
    b"\xff\xfe\x00",
    b'"unterminated, "quote',
    b"\x1b[31mred\x1b[0m",
    "C1,E1,张伟,2026-11-03,travel,出差,１，２３４.５０,人民币".encode(),
]
line_bytes = st.one_of(
    st.sampled_from(HOSTILE_LINES),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    st.text(max_size=80).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),  # fmt: skip
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode()),
)


def _written(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        yield path


def _read_all(path: Path, reader: Any) -> list[Entry] | None:
    """Every entry, or None when the file was refused as a whole (with a reason)."""
    try:
        return list(reader(path))
    except FileFormatError as exc:
        assert str(exc)
        return None


def _each_refused_with_a_reason_or_read(entries: list[Entry]) -> None:
    for entry in entries:
        assert entry.payload is not None or entry.problems, entry
        assert all(problem.strip() for problem in entry.problems)
        assert entry.location.get("line") or entry.location.get("entry")


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.text(max_size=200)))
def test_the_json_boundary_parses_or_refuses_anything(data: bytes | str) -> None:
    try:
        parse_json(data)
    except InputRefused as exc:
        assert exc.code and exc.message


@FUZZ
@given(st.lists(line_bytes, max_size=12), st.sampled_from([b"\n", b"\r\n"]))
def test_json_lines_give_one_answer_per_line_whatever_the_bytes(lines: list[bytes],
                                                                ending: bytes) -> None:  # fmt: skip
    for path in _written(ending.join(lines), ".jsonl"):
        entries = _read_all(path, jsonl_entries)
        if entries is None:  # only a UTF-16 BOM refuses a JSON Lines file whole
            assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
            continue
        _each_refused_with_a_reason_or_read(entries)
        physical = path.read_bytes().split(b"\n")
        numbers = [int(entry.location["line"]) for entry in entries]
        assert len(set(numbers)) == len(numbers) and all(1 <= n <= len(physical) for n in numbers)
        # every line that is not blank got its answer (a payload, or refused with a reason)
        encoding = choose_encoding(path)
        assert set(numbers) >= {
            n
            for n, line in enumerate(physical, 1)
            if not _blank(line.removeprefix(b"\xef\xbb\xbf"), encoding)
        }


def _blank(line: bytes, encoding: str) -> bool:
    try:
        return not line.decode(encoding.removesuffix("-sig")).strip()
    except UnicodeDecodeError:
        return False  # not text: it must be refused, so it is not blank


HEADER = b"claim_id,employee_id,employee_name,expense_date,category,description,amount,currency"


@FUZZ
@given(st.lists(line_bytes, max_size=12), st.sampled_from([b"\n", b"\r\n"]))
def test_csv_rows_are_read_or_refused_one_by_one_and_never_altered(
    lines: list[bytes], ending: bytes
) -> None:
    for path in _written(ending.join([HEADER, *lines]) + ending, ".csv"):
        entries = _read_all(path, csv_entries)
        if entries is None:
            continue
        _each_refused_with_a_reason_or_read(entries)
        encoding = choose_encoding(path).removesuffix("-sig")
        text = path.read_bytes().decode(encoding, errors="ignore")
        for entry in entries:
            if entry.payload is not None:
                # nothing replaced: a replacement character only where the file holds one
                assert "\ufffd" not in json.dumps(entry.payload, ensure_ascii=False) or (
                    "\ufffd" in text
                )


def _xml_inputs() -> st.SearchStrategy[bytes]:
    sample = (SAMPLES / "einvoices.xml").read_bytes()
    cut = st.integers(0, len(sample)).map(lambda n: sample[:n])
    flipped = st.tuples(st.integers(0, len(sample) - 1), st.binary(min_size=1, max_size=3)).map(
        lambda at: sample[: at[0]] + at[1] + sample[at[0] + len(at[1]) :])  # fmt: skip
    deep = st.integers(10, 3000).map(lambda n: b"<a>" * n + b"</a>" * n)
    return st.one_of(cut, flipped, deep, st.binary(max_size=300))


@FUZZ
@given(_xml_inputs())
def test_xml_is_read_or_refused_as_a_whole_with_a_reason(data: bytes) -> None:
    for path in _written(data, ".xml"):
        entries = _read_all(path, einvoice_entries)
        if entries is not None:
            _each_refused_with_a_reason_or_read(entries)


def _messy_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
        st.decimals(allow_nan=False, allow_infinity=False), st.text(max_size=30),
        st.sampled_from(["2026-11-03", "2026年11月3日", "0001-01-01T00:00:00+14:00",
                         "9999-12-31T23:59:59-14:00", "¥1,234.50", "１２３.４", "1e400", "-5",
                         "C\u200b1", "\ufeffC1", "\x1b[2J", "99999999999999999999.99",
                         "0.123456789", "人民币", "RMB", "同意", "数电普票"]),
    )  # fmt: skip


def _payload(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = sorted(KINDS[kind].model.model_fields)
    line = st.dictionaries(st.sampled_from(["category", "description", "amount", "currency",
                                            "expense_date", "invoice_refs", "name",
                                            "amount_net", "tax_rate", "tax_amount",
                                            "quantity", "unit_price"]),
                           _messy_value(), max_size=8)  # fmt: skip
    return st.dictionaries(st.sampled_from(fields), _messy_value(), max_size=len(fields)).flatmap(
        lambda base: st.lists(line, max_size=3).map(lambda lines: {**base, "lines": lines})
    )


@FUZZ
@given(
    st.sampled_from(sorted(KINDS)).flatmap(lambda kind: st.tuples(st.just(kind), _payload(kind)))
)
def test_models_accept_or_refuse_and_what_they_accept_fits_its_contract(
    drawn: tuple[str, dict[str, Any]],
) -> None:
    kind, payload = drawn
    try:
        model = KINDS[kind].validate(payload)
    except ValidationError as exc:
        assert exc.errors()
        return
    record = model.to_record("fuzz", {"file": "f", "line": "1"})
    role = KINDS[kind].role
    AvroSerializer(MemoryRegistry(), f"{role}-value", contract(CONTRACTS[role]).latest)(record)  # type: ignore[arg-type]


@FUZZ
@given(st.dictionaries(st.sampled_from(["X-Erpbridge-Source", "X-Erpbridge-Timestamp",
                                        "X-Erpbridge-Signature"]),
                       st.one_of(st.text(max_size=40),
                                 st.sampled_from(["9" * 400, "²", "١٢٣", "-1", "1e9",
                                                  "travel-platform"]))))  # fmt: skip
def test_signature_headers_are_checked_without_a_traceback(headers: dict[str, str]) -> None:
    try:
        verify(headers, b"{}", {"travel-platform": "secret"}, 300)
    except SignatureRefused as exc:
        assert exc.code


def _pages() -> st.SearchStrategy[bytes]:
    item = st.dictionaries(
        st.sampled_from(["claim_id", "updated_at", "lines", "x"]),
        st.one_of(st.text(max_size=10), st.integers(), st.none()),
        max_size=4,
    )
    page = st.dictionaries(
        st.sampled_from(["items", "next"]),
        st.one_of(st.lists(item, max_size=4), st.text(max_size=5)),
        max_size=2,
    )
    return st.one_of(
        page.map(lambda p: json.dumps(p).encode()),
        st.binary(max_size=200),
        st.sampled_from([b"[]", b"null", b'{"items": null}', b'{"items": [1]}']),
    )


@FUZZ
@given(_pages())
def test_a_polled_page_is_read_or_refused_as_a_whole_with_a_reason(body: bytes) -> None:
    from connectors.sources.poll import UpstreamRefused, _items

    try:
        items = _items("http://upstream.test/claims", body)
    except UpstreamRefused as exc:
        assert str(exc) and exc.body == body  # kept for the rejection topic
        return
    assert all(item["claim_id"] and item["updated_at"] for item in items)


_TICKET: dict[str, Any] = {
    "invoice_type": "电子发票（航空运输电子客票行程单）", "invoice_number": "26312000000987654321",
    "issue_date": "2026-11-03", "seller_name": "中国东方航空股份有限公司",
    "seller_tax_id": "91310000132211111P", "buyer_name": "ERPBridge Demo Co., Ltd.",
    "amount_net": "1339.36", "tax_amount": "110.64", "total": "1450.00",
    "passenger": {"traveller_name": "李娜", "traveller_id_masked": "3101**********567X",
                  "fare": "1340.00", "fuel_surcharge": "60.00", "development_fund": "50.00"},
}  # fmt: skip
_TICKET_FIELDS = ["invoice_type", "invoice_number", "amount_net", "tax_amount", "total",
                  "red_of", "platform_status", "original"]  # fmt: skip
_PASSENGER_FIELDS = ["traveller_name", "traveller_id_masked", "travel_date", "fare",
                     "fuel_surcharge", "development_fund", "stated_vat"]  # fmt: skip
_ORIGINALS = st.one_of(_messy_value(), st.fixed_dictionaries({
    "media_type": st.sampled_from(["application/xml", "application/pdf", "text/html"]),
    "content_base64": st.one_of(st.text(max_size=20), st.sampled_from(["PEludm9pY2UvPg==", "@@"])),
}))  # fmt: skip


@FUZZ
@given(st.dictionaries(st.sampled_from(_TICKET_FIELDS), st.one_of(_messy_value(), _ORIGINALS),
                       max_size=3),
       st.dictionaries(st.sampled_from(_PASSENGER_FIELDS), _messy_value(), max_size=3))  # fmt: skip
def test_tickets_red_letters_and_originals_are_accepted_whole_or_refused(
    header: dict[str, Any], passenger: dict[str, Any]
) -> None:
    """A ticket with some fields made messy: refused with reasons, or accepted, then encoded
    and checked by the stream's rules (tax problems, VAT facts) without a traceback."""
    from streams.invoice_checks import tax_problems, vat_facts

    payload = {**_TICKET, **header, "passenger": {**_TICKET["passenger"], **passenger}}
    try:
        model = KINDS["invoices"].validate(payload)
        if model.original is not None:
            model.original.content()
    except (ValidationError, ValueError) as exc:
        assert str(exc)
        return
    record = model.to_record("fuzz", {"file": "f", "entry": "1"})
    AvroSerializer(MemoryRegistry(), "invoices-value", contract("invoice").latest)(record)  # type: ignore[arg-type]
    if not tax_problems(record):
        facts = vat_facts(record)
        assert sum(float(part["tax"]) for part in facts["taxes"]) <= abs(float(record["total"]))
