import datetime

from books.reconcile import ErpDocument, reconcile
from books.store import BooksSettings, Store

DAY = datetime.date(2026, 11, 2)
T0 = datetime.datetime(2026, 11, 2, 8, 0)


class Ledger:
    def __init__(self, documents: list[ErpDocument], extra: list[ErpDocument]) -> None:
        self.listed = documents
        self.extra = extra

    def documents(self, references: list[str]) -> list[ErpDocument]:
        return [d for d in self.listed if d.reference in references]

    def documents_between(self, start: datetime.date, end: datetime.date) -> list[ErpDocument]:
        return self.listed + self.extra

    def close(self) -> None:
        pass


def _store() -> Store:
    store = Store(BooksSettings(path=":memory:"))
    rows = [(f"P{n}", f"P{n}", 1, "oa", "E1", "张伟", "D10", f"CC-{n % 2}", DAY, "CNY",
             1000 * n, 60 * n, T0, "t", 0, n) for n in range(1, 7)]  # fmt: skip
    store.upsert("postings", rows)
    store.upsert(
        "feedback",
        [
            (f"P{n}", "tryton", "BOOKED", f"INV{n}", str(n), None, 1000 * n, None, T0)
            for n in range(1, 6)
        ],
    )  # P6 never answered
    return store


def _doc(n: int, **changes: object) -> ErpDocument:
    values = {
        "reference": f"P{n}",
        "number": f"INV{n}",
        "state": "posted",
        "total_minor": 1000 * n,
        "tax_minor": 60 * n,
        "date": DAY,
        **changes,
    }
    return ErpDocument(**values)  # type: ignore[arg-type]


def test_each_kind_of_difference_is_named_with_its_document() -> None:
    ledger = Ledger(
        [
            _doc(1),
            _doc(3, total_minor=2999),
            _doc(4, tax_minor=0),
            _doc(5, state="cancelled"),
            _doc(6),
            _doc(6, number="INV6-again"),  # booked twice
            _doc(1, state="cancelled", number="INV1-old"),  # cancelled, entered again: fine
        ],
        [_doc(9, reference="NOT-OURS", number="INV9")],
    )  # P2 missing
    result = reconcile(
        _store(),
        ledger,
        DAY,
        DAY,
        by="cost_centre",
        now=datetime.datetime(2026, 11, 2, 12, 0, tzinfo=datetime.UTC),
    )
    found = sorted((d.kind, d.reference) for d in result.differences)
    assert found == [("amount_mismatch", "P3"), ("duplicate_in_erp", "P6"),
                     ("missing_in_erp", "P2"), ("no_feedback", "P6"), ("not_posted", "P5"),
                     ("tax_mismatch", "P4"), ("unexpected_in_erp", "NOT-OURS")]  # fmt: skip
    twice = next(d for d in result.differences if d.kind == "duplicate_in_erp")
    assert twice.document == "INV6, INV6-again" and twice.erp_minor == 12000
    assert (result.sent, result.sent_minor) == (6, 21000)
    assert result.booked == 4 and not result.ok
    assert result.per_group["CC-1"]["sent"] == 3 and result.per_group["CC-0"]["sent"] == 3


def test_books_that_match_the_erp_reconcile_to_zero() -> None:
    store = _store()
    store.upsert("feedback", [("P6", "tryton", "BOOKED", "INV6", "6", None, 6000, None, T0)])
    ledger = Ledger([_doc(n) for n in range(1, 7)], [])
    result = reconcile(store, ledger, DAY, DAY, now=datetime.datetime.now(datetime.UTC))
    assert result.ok and result.counts() == dict.fromkeys(result.counts(), 0)
    assert (result.booked, result.booked_minor) == (6, 21000)


def test_a_document_cancelled_and_entered_again_by_hand_is_compared_as_entered_again() -> None:
    store = _store()
    store.upsert("feedback", [("P6", "tryton", "BOOKED", "INV6", "6", None, 6000, None, T0)])
    again = _doc(2, number="INV2-again", total_minor=2500)
    ledger = Ledger([_doc(n) for n in (1, 3, 4, 5, 6)] + [_doc(2, state="cancelled"), again], [])
    result = reconcile(store, ledger, DAY, DAY, now=datetime.datetime.now(datetime.UTC))
    assert [(d.kind, d.reference, d.document, d.erp_minor) for d in result.differences] == [
        ("amount_mismatch", "P2", "INV2-again", 2500)
    ]


def test_a_batch_naming_a_row_twice_is_stored_once_the_newest_answer_winning() -> None:
    store = Store(BooksSettings(path=":memory:"))
    later = T0 + datetime.timedelta(minutes=5)
    store.upsert("feedback", [
        ("P1", "tryton", "BOOKED", "INV1", "1", None, 1000, None, later),
        ("P1", "tryton", "FAILED", None, None, None, None, "timeout", T0),  # older, arrives last
        ("P2", "tryton", "FAILED", None, None, None, None, "timeout", T0),
        ("P2", "tryton", "BOOKED", "INV2", "2", None, 2000, None, later),
    ])  # fmt: skip
    assert store.query("select posting_id, status from feedback order by 1") == [
        ("P1", "BOOKED"), ("P2", "BOOKED")]  # fmt: skip
    store.upsert("feedback", [("P1", "tryton", "FAILED", None, None, None, None, "x", T0)])
    assert store.query("select status from feedback where posting_id = 'P1'") == [("BOOKED",)]
