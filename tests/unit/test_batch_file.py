from pathlib import Path

import pytest

from connectors.sources.file_formats import (
    FileFormatError,
    choose_encoding,
    csv_entries,
    jsonl_entries,
    read_rows,
)
from erpbridge.boundary import InputLimits

HEADER = "claim_id,employee_id,employee_name,expense_date,category,description,amount,currency"


def test_utf8_with_bom_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        f'{HEADER}\nC1,E1,张伟,2026-11-03,travel,"北京, 上海","1,280.00",CNY\n\n'
        "C2,E2,李娜,2026-11-04,meals,午餐,35,CNY\n",
        encoding="utf-8-sig",
    )
    rows = list(read_rows(path))
    assert [line for line, _ in rows] == [2, 4]
    assert rows[0][1]["claim_id"] == "C1"  # the BOM is not part of the first column's name
    assert rows[0][1]["description"] == "北京, 上海"
    assert rows[0][1]["amount"] == "1,280.00"


def test_gbk_file_with_chinese_headers(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(
        "报销单号,工号,姓名,日期,费用类别,摘要,金额,币种\n"
        "C9,E9,王芳,2026年11月3日,交通,出租车,86.00,人民币\n".encode("gbk")
    )
    ((line, row),) = read_rows(path)
    assert line == 2
    assert row["claim_id"] == "C9"
    assert row["employee_name"] == "王芳"
    assert row["expense_date"] == "2026年11月3日"


def test_short_rows_are_flagged(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text(f"{HEADER}\nC1,E1,张伟\n", encoding="utf-8")
    (entry,) = csv_entries(path)
    assert entry.problems == ["row: 3 values for 8 columns"]


def test_missing_required_column_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,x\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"missing column\(s\) \['claim_id', 'amount'\]"):
        list(read_rows(path))


def test_empty_file_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty file"):
        list(read_rows(path))


def test_one_stray_byte_costs_its_line_only_and_nothing_is_read_as_mojibake(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mixed.csv"
    good = [f"C{n},E{n},张伟{n},2026-11-03,travel,北京出差,100,CNY\n".encode() for n in range(50)]
    stray = "C99,E99,王芳,2026-11-03,travel,".encode() + "出租车".encode("gbk") + b",1,CNY\n"
    path.write_bytes(HEADER.encode() + b"\n" + b"".join(good[:30]) + stray + b"".join(good[30:]))
    assert choose_encoding(path) == "utf-8"
    entries = list(csv_entries(path))
    refused = [e for e in entries if e.payload is None]
    assert len(entries) == 51 and len(refused) == 1
    (bad,) = refused
    assert bad.location == {"file": "mixed.csv", "line": "32"} and bad.raw == stray
    assert bad.problems[0].startswith("line: not utf-8 text: bytes b'\\xb3")
    assert {e.payload["employee_name"] for e in entries if e.payload} == {
        f"张伟{n}" for n in range(50)}  # fmt: skip


def test_gbk_files_are_still_gbk_and_utf16_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("报销单号,金额\nC1,出租车\n".encode("gbk"))
    assert choose_encoding(path) == "gb18030"
    path.write_bytes("报销单号,金额\n".encode("utf-16"))
    with pytest.raises(FileFormatError, match="UTF-16 text"):
        choose_encoding(path)


def test_an_oversized_field_or_line_costs_its_record_only(tmp_path: Path) -> None:
    limits = InputLimits(max_field_chars=100, max_line_bytes=2048)
    path = tmp_path / "big.csv"
    path.write_text(f"{HEADER}\nC1,E1,张伟,2026-11-03,travel,{'x' * 500},1,CNY\n"
                    f"C2,E2,李娜,2026-11-03,travel,ok,2,CNY\n"
                    f"C3,E3,王芳,2026-11-03,travel,{'y' * 5000},3,CNY\n"
                    f"C4,E4,何静,2026-11-03,travel,ok,4,CNY\n", encoding="utf-8")  # fmt: skip
    entries = list(csv_entries(path, limits))
    assert [(e.location["line"], e.payload is None) for e in entries] == [
        ("2", True), ("3", False), ("4", True), ("5", False)]  # fmt: skip
    assert "field larger than field limit (100)" in entries[0].problems[0]
    assert entries[2].problems == ["line: longer than 2048 bytes"]


def test_json_lines_refuse_what_python_would_crash_on_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join([
        "[" * 5000 + "]" * 5000,
        '{"claim_id": "C1", "amount": ' + "9" * 5000 + "}",
        '{"claim_id": "C1", "amount": "12.34", "amount": "99999.00"}',
        '{"claim_id": "\\ud800"}',
        '{"claim_id": "C2", "amount": NaN}',
        '{"claim_id": "C3"}',
    ]), encoding="utf-8")  # fmt: skip
    entries = list(jsonl_entries(path))
    assert [e.problems[0].split(":")[0:2] for e in entries[:5]] == [
        ["line", " nested deeper than 16"], ["line", " a number of 5000 characters (at most 40)"],
        ["line", " the key 'amount' appears twice in an object"],
        ["line", " a string holds a lone UTF-16 surrogate (not a character)"],
        ["line", " NaN is not a JSON number"]]  # fmt: skip
    assert entries[5].payload == {"claim_id": "C3"}
