"""Input VAT of passenger tickets (公告2019年第39号 §6), to the fen."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.passenger_vat import (
    AIR,
    RAILWAY,
    ROAD,
    TICKET_KINDS,
    WATERWAY,
    Ticket,
    TicketVat,
    not_deductible_ticket,
    ticket_vat,
)


def test_railway_ticket_face_value_over_one_point_zero_nine() -> None:
    # 553.00 / 1.09 * 0.09 = 45.6605... -> 45.66; base 507.34
    assert ticket_vat(Ticket(RAILWAY, 55_300)) == TicketVat(Decimal("0.09"), 50_734, 4_566)


def test_air_itinerary_fare_and_fuel_surcharge_but_not_the_development_fund() -> None:
    # (1,280.00 + 60.00) / 1.09 * 0.09 = 110.6422... -> 110.64; the 50.00 fund is left out
    vat = ticket_vat(Ticket(AIR, 128_000, fuel_surcharge_fen=6_000, development_fund_fen=5_000))
    assert (vat.tax_fen, vat.base_fen) == (11_064, 122_936)


def test_air_itinerary_with_the_vat_it_states_deducts_that_amount() -> None:
    vat = ticket_vat(Ticket(AIR, 128_000, fuel_surcharge_fen=6_000, stated_tax_fen=11_065))
    assert (vat.tax_fen, vat.base_fen) == (11_065, 122_935)


def test_road_and_waterway_tickets_at_three_percent_rounded_half_up() -> None:
    # 51.50 / 1.03 * 0.03 = 1.5 exactly -> 1.50; 10.00 / 1.03 * 0.03 = 0.29126 -> 0.29
    assert ticket_vat(Ticket(ROAD, 5_150)).tax_fen == 150
    assert ticket_vat(Ticket(WATERWAY, 1_000)) == TicketVat(Decimal("0.03"), 971, 29)


@pytest.mark.parametrize("ticket", [
    Ticket("DIGITAL_GENERAL", 100), Ticket(RAILWAY, -1), Ticket(RAILWAY, 100, fuel_surcharge_fen=5),
    Ticket(AIR, 100, stated_tax_fen=101), Ticket(AIR, 100, stated_tax_fen=-1),
])  # fmt: skip
def test_what_is_not_a_valid_ticket_is_refused_with_a_reason(ticket: Ticket) -> None:
    with pytest.raises(ValueError):
        ticket_vat(ticket)


def test_only_a_ticket_naming_an_employee_deducts() -> None:
    staff = frozenset({"张三", "李四"})

    def known(name: str, id_masked: str | None) -> bool:
        return name in staff

    assert not_deductible_ticket({"name": "李四"}, known) is None  # a colleague's ticket
    assert "王五 is not an employee" in (not_deductible_ticket({"name": "王五"}, known) or "")
    assert not_deductible_ticket(None, known) == "the ticket names no traveller"


@settings(max_examples=300, derandomize=True)
@given(st.sampled_from(sorted(TICKET_KINDS)), st.integers(0, 10**9), st.integers(0, 10**6))
def test_base_and_tax_always_add_up_to_the_deductible_amount(kind: str, face: int,
                                                             fuel: int) -> None:  # fmt: skip
    fuel = fuel if kind == AIR else 0
    vat = ticket_vat(Ticket(kind, face, fuel_surcharge_fen=fuel))
    assert vat.base_fen + vat.tax_fen == face + fuel and vat.tax_fen >= 0
    exact = Decimal(face + fuel) * vat.rate / (1 + vat.rate)
    assert abs(Decimal(vat.tax_fen) - exact) <= Decimal("0.5")
