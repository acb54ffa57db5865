from pathlib import Path

import pytest

from connectors.sources.file_formats import FileFormatError, detect_encoding, read_rows

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
    ((_, row),) = read_rows(path)
    assert row["_column_count"] == "3 values for 8 columns"


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


def test_a_character_cut_by_the_probe_window_is_still_utf8() -> None:
    text = "张伟".encode()
    assert detect_encoding(text[:-1], complete=False, name="x") == "utf-8-sig"
    assert detect_encoding("张伟".encode("gbk"), complete=True, name="x") == "gb18030"
