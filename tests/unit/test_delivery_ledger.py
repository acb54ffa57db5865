"""The consumer's safety net: no commit past a record not yet handed to the agents, and a record
dropped on its way to them is found between batches."""

from streams.delivery_ledger import DeliveryLedger


def test_a_commit_stops_at_the_first_record_not_yet_handed_on() -> None:
    ledger: DeliveryLedger[str] = DeliveryLedger()
    ledger.fetched("p0", [10, 11, 14])  # 12 and 13: transaction markers
    ledger.delivered("p0", 10)
    assert ledger.first_pending("p0") == 11
    ledger.delivered("p0", 11)
    ledger.delivered("p0", 14)
    assert ledger.first_pending("p0") is None and ledger.dropped() == {}


def test_a_record_fetched_but_never_handed_on_is_reported_and_forgotten_once_reread() -> None:
    ledger: DeliveryLedger[str] = DeliveryLedger()
    ledger.fetched("p0", [20, 21, 22, 23])
    ledger.fetched("p1", [5])
    for offset in (20, 22, 23):  # 21 was lost on the way
        ledger.delivered("p0", offset)
    ledger.delivered("p1", 5)
    assert ledger.dropped() == {"p0": 21}
    ledger.forget("p0", 21)  # read again from 21
    assert ledger.dropped() == {} and ledger.first_pending("p0") is None
    ledger.fetched("p1", [6, 7])
    ledger.forget_all()
    assert ledger.first_pending("p1") is None
