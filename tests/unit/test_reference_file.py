from pathlib import Path

import pytest

from connectors.sources.reference_file import ReferenceFileError, read_reference

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "reference"


def test_the_sample_files_are_read_as_their_kinds() -> None:
    kinds = {path.name: read_reference(path)[0] for path in SAMPLES.glob("*.csv")}
    assert kinds == {
        "rates.csv": "rate",
        "employees.csv": "employee",
        "departments.csv": "department",
        "cost_centres.csv": "cost_centre",
        "companies.csv": "company",
    }
    assert read_reference(SAMPLES / "companies.csv")[1] == [
        ("company:91110108MA01ABCDEN", {"name": "ERPBridge Demo Co. Ltd."})]  # fmt: skip
    kind, entries = read_reference(SAMPLES / "rates.csv")
    assert entries[0] == ("rate:USD:2026-11-09", {"rate": "7.1105"})


def test_a_file_with_bad_rows_names_each_and_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("currency,date,rate\nUSD,2026-11-12,7.12\nXYZ,2026-11-12,1\n"
                    "EUR,12/11/2026,7.5\nJPY,2026-11-12,-0.05\n", encoding="utf-8")  # fmt: skip
    with pytest.raises(ReferenceFileError) as caught:
        read_reference(path)
    lines = str(caught.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["3", "4", "5"]
    assert "currency 'XYZ' is not one we accept" in lines[0]
    assert "must be a positive number" in lines[2]


def test_an_unknown_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("name,colour\na,b\n", encoding="utf-8")
    with pytest.raises(ReferenceFileError, match="header"):
        read_reference(path)


def test_a_company_tax_id_must_be_a_valid_unified_social_credit_code(tmp_path: Path) -> None:
    path = tmp_path / "companies.csv"
    path.write_text("tax_id,name\n91110108MA01ABCDEX,typo\n", encoding="utf-8")
    with pytest.raises(ReferenceFileError, match="not a valid unified social credit code"):
        read_reference(path)


def test_expense_category_accounts_and_input_vat_rates_are_file_kinds_too(tmp_path: Path) -> None:
    categories = tmp_path / "categories.csv"
    categories.write_text("category,account,name\ntravel,6.6.2,差旅费\n", encoding="utf-8")
    assert read_reference(categories) == (
        "category", [("category:TRAVEL", {"account": "6.6.2", "name": "差旅费"})])  # fmt: skip
    taxes = tmp_path / "input_vat.csv"
    taxes.write_text("tax_rate,tax\n0.0900,进项税额 9%\n0.015,\n", encoding="utf-8")
    assert read_reference(taxes) == ("input_vat", [("input_vat:0.09", {"tax": "进项税额 9%"}),
                                                   ("input_vat:0.015", {})])  # fmt: skip
    taxes.write_text("tax_rate\n9\n", encoding="utf-8")  # a percentage, not a fraction
    with pytest.raises(ReferenceFileError, match="must be a fraction in"):
        read_reference(taxes)
    categories.write_text("category,account\nmeals,\n", encoding="utf-8")
    with pytest.raises(ReferenceFileError, match="category and account are required"):
        read_reference(categories)
