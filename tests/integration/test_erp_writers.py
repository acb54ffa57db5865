"""One conformance suite for every ERP writer (Benthos style): the real Tryton, and the generic
REST writer against a stand-in gateway. Each must book once, answer a repeat with the same
document, refuse what the ERP refuses as permanent, and say whether the ERP answers."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from connectors.erp.base import Booking, ErpWriter, PaymentLookup
from connectors.erp.errors import PermanentErpError, RetryableErpError
from connectors.erp.rest import RestErpSettings, RestErpWriter
from connectors.erp.tryton import TrytonWriter
from connectors.erp.tryton_rpc import TrytonRpc
from deploy.local.process import free_port
from erpbridge.model import Posting
from tests.contract_samples import SAMPLES
from tests.fakes.erp_gateway import Gateway
from tests.integration.tryton_pay import pay

pytestmark = pytest.mark.integration


BATCH = {"batch_create_path": "/vouchers/batch",
         "batch_lookup_path": "/vouchers?external_refs={references}"}  # fmt: skip


@pytest.fixture(params=["tryton", "rest", "rest-batch"])
def writer(request, erp) -> Iterator[ErpWriter]:
    if request.param == "tryton":
        writer: ErpWriter = TrytonWriter(TrytonRpc(erp.url, erp.database, erp.user,
                                                   erp.password), "2.1.4")  # fmt: skip
        yield writer
    else:
        gateway = Gateway(token="s3cret")
        server, url = gateway.serve()
        batch = BATCH if request.param == "rest-batch" else {}
        writer = RestErpWriter(RestErpSettings(base_url=url, auth="bearer", token="s3cret",
                                               **batch))  # fmt: skip
        writer.gateway = gateway  # type: ignore[attr-defined]
        yield writer
        server.shutdown()
    writer.close()


def _posting(account: str = "5.2.2") -> Posting:
    claim_id = f"W-{uuid.uuid4().hex[:8].upper()}"
    record = dict(SAMPLES["erp_posting"], posting_id=claim_id, claim_id=claim_id)
    record["lines"] = [dict(record["lines"][0], account_code=account)]
    return Posting.from_record(record)


def test_books_once_and_answers_a_repeat_with_the_same_document(writer: ErpWriter) -> None:
    posting = _posting()
    first = writer.book(posting)
    assert (first.reference, first.already_booked, first.total) == (
        posting.posting_id, False, Decimal("553.00"))  # fmt: skip
    assert first.number and first.voucher
    again = writer.book(posting)
    assert again.already_booked and again.document_id == first.document_id
    assert again.number == first.number


def test_what_the_erp_refuses_is_permanent(writer: ErpWriter) -> None:
    with pytest.raises(PermanentErpError):
        writer.book(_posting(account="9.9.9"))


def test_a_batch_gets_one_outcome_per_posting_in_order(writer: ErpWriter) -> None:
    before, new, refused, other = _posting(), _posting(), _posting(account="9.9.9"), _posting()
    first = writer.book(before)
    outcomes = writer.book_many([new, before, refused, other])
    assert [type(o).__name__ for o in outcomes] == ["Booking", "Booking", "PermanentErpError",
                                                    "Booking"]  # fmt: skip
    booked = [o for o in outcomes if isinstance(o, Booking)]
    assert [b.reference for b in booked] == [new.posting_id, before.posting_id, other.posting_id]
    assert [b.already_booked for b in booked] == [False, True, False]
    assert booked[1].document_id == first.document_id
    again = writer.book_many([new, other])  # a retried batch books nothing twice
    assert all(isinstance(o, Booking) and o.already_booked for o in again)
    gateway = getattr(writer, "gateway", None)
    if gateway is not None and writer._config.batch_create_path:  # type: ignore[attr-defined]
        posts = [r for r in gateway.requests if r[0] == "POST"]
        assert [r[1] for r in posts] == ["/vouchers", "/vouchers/batch"]  # one for the batch
        assert sum(r[0] == "GET" for r in gateway.requests) <= 4  # lookups in batches, no loop


def test_a_paid_booking_is_read_back_with_its_payment(writer: ErpWriter, erp) -> None:
    """The payment loop's lookup: nothing is paid after booking; once the ERP paid one (Tryton:
    its Pay wizard; a gateway: its voucher in a paid state), that one is, with its amount,
    date and payment voucher."""
    assert isinstance(writer, PaymentLookup)
    first, second = _posting(), _posting()
    writer.book_many([first, second])
    refs = [first.posting_id, second.posting_id]
    assert writer.payments(refs) == {}
    gateway = getattr(writer, "gateway", None)
    if gateway is not None:
        gateway.pay(first.posting_id, "2026-12-07", "付-0001")
    else:
        rpc = TrytonRpc(erp.url, erp.database, erp.user, erp.password)
        pay(rpc, first.posting_id, on=datetime.date(2026, 12, 7))
        rpc.close()
    (paid,) = writer.payments(refs).values()
    assert (paid.reference, paid.paid_minor, paid.paid_on) == (
        first.posting_id, 55300, datetime.date(2026, 12, 7))  # fmt: skip
    assert paid.payment_reference


def test_probe_says_whether_the_erp_answers(writer: ErpWriter) -> None:
    assert writer.probe() is True
    if isinstance(writer, TrytonWriter):
        dead: ErpWriter = TrytonWriter(TrytonRpc(f"http://127.0.0.1:{free_port()}", "x", "a", "b"),
                                       "2.1.4")  # fmt: skip
    else:
        dead = RestErpWriter(RestErpSettings(base_url=f"http://127.0.0.1:{free_port()}"))
    assert dead.probe() is False
    with pytest.raises(RetryableErpError):
        dead.book(_posting())
    dead.close()


def test_rest_statuses_are_classified_and_the_request_is_mapped() -> None:
    gateway = Gateway()
    server, url = gateway.serve()
    writer = RestErpWriter(RestErpSettings(base_url=url))
    try:
        gateway.fail_next = [(429, {"Retry-After": "7"})]
        with pytest.raises(RetryableErpError) as caught:
            writer.book(_posting())
        assert caught.value.retry_after == 7.0
        gateway.fail_next = [(503, {})]
        with pytest.raises(RetryableErpError):
            writer.book(_posting())
        posting = _posting()
        booking = writer.book(posting)
        voucher = gateway.vouchers[posting.posting_id]
        assert (voucher["total"], voucher["currency"], voucher["employee"]["code"]) == (
            "553.00", "CNY", "E1001")  # fmt: skip
        assert voucher["lines"] == [{"account": "5.2.2", "amount": "553.00", "net": "507.34",
                                     "memo": "travel: 高铁二等座",
                                     "invoices": ["26312000000123456789"],
                                     "input_vat": [{"invoice_ref": "26312000000123456789",
                                                    "tax_rate": "0.0900", "base": "507.34",
                                                    "tax": "45.66"}]}]  # fmt: skip
        assert voucher["input_vat"] == "45.66"
        posts = [r for r in gateway.requests if r[0] == "POST"]
        assert posts[-1][2]["Idempotency-Key"] == posting.posting_id
        assert (booking.number, booking.voucher) == (voucher["number"], voucher["voucher_number"])
        # The lookup misses (say, a lagging replica) and the create answers 409: looked up again.
        gateway.fail_next = [(404, {})]
        repeat = writer.book(posting)
        assert repeat.already_booked and repeat.document_id == booking.document_id
        assert len(gateway.vouchers) == 1
        # a reversal (its amounts negative) goes with the reversal template: a credit note
        red = _posting()
        record = dict(SAMPLES["erp_posting"], posting_id=red.posting_id + "-RED-1",
                      claim_id=red.claim_id, kind="REVERSAL", reverses=red.posting_id,
                      total_minor=-55300, tax_minor=-4566)  # fmt: skip
        line = record["lines"][0]
        record["lines"] = [dict(line, amount_minor=-55300, input_vat=[dict(
            line["input_vat"][0], base_minor=-50734, tax_minor=-4566)])]  # fmt: skip
        writer.book(Posting.from_record(record))
        credit = gateway.vouchers[red.posting_id + "-RED-1"]
        assert (credit["kind"], credit["reverses"], credit["total"], credit["input_vat"]) == (
            "REVERSAL", red.posting_id, "-553.00", "-45.66")  # fmt: skip
    finally:
        server.shutdown()
        writer.close()


def test_tryton_books_deductible_input_vat_as_exact_manual_taxes(erp) -> None:
    """A hotel night on a 6% special invoice and a meal on a 13% one (whose line claims only
    part of it): the invoice's lines carry the net expense, its taxes the VAT on 1.4.4."""
    writer = TrytonWriter(TrytonRpc(erp.url, erp.database, erp.user, erp.password), "2.1.4")
    claim_id = f"W-{uuid.uuid4().hex[:8].upper()}"
    record = dict(SAMPLES["erp_posting"], posting_id=claim_id, claim_id=claim_id,
                  total_minor=128000 + 30000, tax_minor=7245 + 3451)  # fmt: skip
    base = record["lines"][0]
    record["lines"] = [
        dict(base, description="lodging: 住宿费", amount_minor=128000, invoice_refs=["H1"],
             input_vat=[{"invoice_ref": "H1", "tax_rate": Decimal("0.0600"),
                         "base_minor": 120755, "tax_minor": 7245}]),
        dict(base, description="meals: 招待", amount_minor=30000, invoice_refs=["M1"],
             input_vat=[{"invoice_ref": "M1", "tax_rate": Decimal("0.1300"),
                         "base_minor": 26549, "tax_minor": 3451}]),
    ]  # fmt: skip
    try:
        booking = writer.book(Posting.from_record(record))
        assert booking.total == Decimal("1580.00")
        rpc = writer._rpc
        (invoice,) = rpc.call("model.account.invoice.search_read", [("reference", "=", claim_id)],
                              0, 1, None, ["untaxed_amount", "tax_amount", "move"])  # fmt: skip
        assert (invoice["untaxed_amount"], invoice["tax_amount"]) == (
            Decimal("1473.04"), Decimal("106.96"))  # fmt: skip
        taxes = rpc.call("model.account.invoice.tax.search_read", [("invoice", "=", invoice["id"])],
                         0, None, [("amount", "DESC")],
                         ["amount", "base", "manual", "account.code", "tax.rate"])  # fmt: skip
        assert [(t["amount"], t["base"], t["manual"], t["account."]["code"], t["tax."]["rate"])
                for t in taxes] == [
            (Decimal("72.45"), Decimal("1207.55"), True, "1.4.4", Decimal("0.06")),
            (Decimal("34.51"), Decimal("265.49"), True, "1.4.4", Decimal("0.13")),
        ]  # fmt: skip
        # the move: expenses net, input VAT 106.96 on 1.4.4, 1,580.00 owed to the employee
        lines = rpc.call("model.account.move.line.search_read", [("move", "=", invoice["move"])],
                         0, None, None, ["debit", "credit", "account.code"])  # fmt: skip
        by_account: dict[str, Decimal] = {}
        for line in lines:
            code = line["account."]["code"]
            by_account[code] = by_account.get(code, Decimal(0)) + line["debit"] - line["credit"]
        assert by_account == {"5.2.2": Decimal("1473.04"), "1.4.4": Decimal("106.96"),
                              "2.1.4": Decimal("-1580.00")}  # fmt: skip
        # a rate the ERP has no input VAT tax for is refused, not booked without its tax
        seven = [dict(record["lines"][0]["input_vat"][0], tax_rate=Decimal("0.0700"))]
        odd = dict(record, posting_id=claim_id + "-X", claim_id=claim_id + "-X",
                   lines=[dict(record["lines"][0], input_vat=seven)])  # fmt: skip
        with pytest.raises(PermanentErpError, match="no input VAT tax at rate 0.0700"):
            writer.book(Posting.from_record(odd))
    finally:
        writer.close()


def test_a_batch_gets_one_outcome_per_posting(writer: ErpWriter) -> None:
    booked_before = _posting()
    writer.book(booked_before)
    good, bad = _posting(), _posting(account="9.9.9")
    outcomes = writer.book_many([good, bad, booked_before])
    assert isinstance(outcomes[0], Booking) and not outcomes[0].already_booked
    assert isinstance(outcomes[1], PermanentErpError)
    assert isinstance(outcomes[2], Booking) and outcomes[2].already_booked
    assert writer.book(good).already_booked  # booked once, not twice
    with pytest.raises(PermanentErpError):  # the refused one left nothing behind
        writer.book(bad)


class _Interleaved(TrytonRpc):
    """A real Tryton connection that lets another writer act just before a given call: the
    interleavings two sink instances booking one posting (around a rebalance) can meet."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.before: dict[str, Callable[[], None]] = {}

    def call(self, method: str, *args: object) -> object:
        step = self.before.pop(method, None)
        if step is not None:
            step()
        return super().call(method, *args)


def test_two_tryton_writers_booking_one_posting_at_once_book_it_once(erp) -> None:
    """Writer A creates its draft; B creates one too (it searched before A's create), so
    Tryton refuses A's post (a similar invoice: same reference and party). Before A deletes its
    refused draft, B books the posting: it deletes its duplicate and posts A's draft. A's delete
    then meets a posted invoice (the fault suite's "You cannot modify invoice ... because it is
    posted", which refused a whole batch). Both must answer booked, and the ERP hold one
    posted invoice for the posting."""
    rpc = _Interleaved(erp.url, erp.database, erp.user, erp.password)
    a = TrytonWriter(rpc, "2.1.4")
    b = TrytonWriter(TrytonRpc(erp.url, erp.database, erp.user, erp.password), "2.1.4")
    posting, other = _posting(), _posting()
    answers: dict[str, object] = {}
    rpc.before["model.account.invoice.post"] = lambda: b._rpc.call(
        "model.account.invoice.create", [b.invoice_values(posting)])  # fmt: skip
    rpc.before["model.account.invoice.delete"] = lambda: answers.update(b=b.book_many([posting]))
    try:
        outcomes = a.book_many([posting, other])
        assert [type(o).__name__ for o in outcomes] == ["Booking", "Booking"], outcomes
        (by_b,) = answers["b"]  # type: ignore[misc]
        assert isinstance(by_b, Booking), by_b
        invoices = a.find_invoices([posting.posting_id])
        assert [i["state"] for i in invoices] == ["posted"], invoices
        assert outcomes[0].document_id == by_b.document_id == str(invoices[0]["id"])
        assert a.book(posting).already_booked
    finally:
        a.close()
        b.close()


def test_a_duplicate_draft_left_by_another_writer_is_deleted_and_the_posting_booked(erp) -> None:
    """Two drafts for one posting (two writers created at once, then both stopped): Tryton
    refuses to post either while the other exists. The next booking keeps the older draft,
    deletes the other, and posts once."""
    writer = TrytonWriter(TrytonRpc(erp.url, erp.database, erp.user, erp.password), "2.1.4")
    posting = _posting()
    try:
        values = writer.invoice_values(posting)
        first, second = writer._rpc.call("model.account.invoice.create", [values, values])
        booking = writer.book(posting)
        assert booking.document_id == str(first) and not booking.already_booked
        invoices = writer.find_invoices([posting.posting_id])
        assert [(i["id"], i["state"]) for i in invoices] == [(first, "posted")], second
    finally:
        writer.close()
