import datetime
from decimal import Decimal

import pytest

from erpbridge.model import invoice_ref
from erpbridge.reference import BadReferenceEntry, ReferenceData, code_key, rate_key
from streams.invoice_checks import tax_problems
from tests.contract_samples import SAMPLES

D = datetime.date


def test_rates_fall_back_to_the_last_fixing_within_the_window_and_tombstones_remove() -> None:
    data = ReferenceData(rate_max_age_days=2)
    data.apply(rate_key("USD", D(2026, 11, 6)), b'{"rate": "7.1187"}')
    data.apply(rate_key("USD", D(2026, 11, 9)), {"rate": "7.1105"})
    assert data.rate("USD", D(2026, 11, 6)) == (Decimal("7.1187"), D(2026, 11, 6))
    assert data.rate("USD", D(2026, 11, 8)) == (Decimal("7.1187"), D(2026, 11, 6))
    assert data.rate("USD", D(2026, 11, 5)) is None  # nothing before
    assert data.rate("USD", D(2026, 11, 12)) is None  # 3 days old: too old
    data.apply(rate_key("USD", D(2026, 11, 9)), None)
    assert data.rate("USD", D(2026, 11, 9)) is None  # the 6th is 3 days back
    assert data.sizes()["rate"] == 1


def test_code_mappings_and_bad_entries() -> None:
    data = ReferenceData()
    data.apply(code_key("employee", " e1001 "), {"party": "P1", "department": "D10"})
    assert data.employee("E1001").party == "P1" and data.employee("E1002") is None
    data.apply(code_key("employee", "E1001"), None)
    assert data.employee("E1001") is None
    with pytest.raises(BadReferenceEntry):
        data.apply("colour:red", {"erp_code": "x"})
    with pytest.raises(BadReferenceEntry):
        data.apply("rate:USD:2026-11-06", {"rate": "-1"})


def test_invoice_references_normalize_to_the_sources_invoice_keys() -> None:
    assert invoice_ref(" 26312000000123456789 ") == "26312000000123456789"
    assert invoice_ref("044001900111 00112233") == "044001900111-00112233"
    assert invoice_ref("1100232130/12345678") == "1100232130-12345678"
    assert invoice_ref("110023213012345678") == "1100232130-12345678"


def test_tax_arithmetic() -> None:
    good = SAMPLES["invoice"]
    assert tax_problems(good) == []
    line = dict(good["lines"][0], tax_amount=Decimal("40.00"))
    assert tax_problems(
        dict(good, lines=[line], tax_amount=Decimal("40.00"), total=Decimal("547.34"))
    ) == [  # fmt: skip
        "lines[1]: tax_amount 40.00 is not amount_net 507.34 x tax_rate 0.0900 (= 45.66) "
        "within 0.01"
    ]
    assert tax_problems(dict(good, lines=[], total=Decimal("553.01"))) == [
        "amount_net 507.34 + tax_amount 45.66 = 553.00, not total 553.01"
    ]
