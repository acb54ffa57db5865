"""The Kingdee and Yonyou writers against stand-ins that check the documented request fields and
answer in the documented shapes: vouchers booked with their input VAT, per-item outcomes,
idempotent retries after a lost answer, and a lost session or token renewed."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from connectors.erp.base import Booking
from connectors.erp.errors import PermanentErpError, RetryableErpError
from connectors.erp.kingdee import KingdeeSettings, KingdeeWriter
from connectors.erp.yonyou import YonyouSettings, YonyouWriter
from erpbridge.model import Posting
from tests.contract_samples import SAMPLES
from tests.fakes.kingdee import KEY, Kingdee
from tests.fakes.yonyou import Yonyou


def _posting(account: str = "5.2.2", reversal: bool = False) -> Posting:
    """553.00 of travel with 45.66 of deductible VAT (a reversal: all of it negative)."""
    sign = -1 if reversal else 1
    posting_id = f"K{uuid.uuid4().hex[:8].upper()}"
    record = dict(SAMPLES["erp_posting"], posting_id=posting_id, claim_id=posting_id,
                  total_minor=sign * 55300, tax_minor=sign * 4566,
                  kind="REVERSAL" if reversal else "BOOKING")  # fmt: skip
    line = record["lines"][0]
    vat = dict(line["input_vat"][0], base_minor=sign * 50734, tax_minor=sign * 4566)
    record["lines"] = [dict(line, account_code=account, amount_minor=sign * 55300,
                            input_vat=[vat])]  # fmt: skip
    return Posting.from_record(record)


@pytest.fixture
def kingdee() -> Iterator[tuple[Kingdee, KingdeeWriter]]:
    fake = Kingdee()
    server, url = fake.serve()
    writer = KingdeeWriter(KingdeeSettings(base_url=url, acct_id=fake.acct_id, user=fake.user,
                                           password=fake.password))  # fmt: skip
    yield fake, writer
    writer.close()
    server.shutdown()


def test_kingdee_books_a_batch_in_one_batchsave_with_an_outcome_per_item(kingdee) -> None:
    fake, writer = kingdee
    good, red, bad = _posting(), _posting(reversal=True), _posting(account="9.9.9")
    outcomes = writer.book_many([good, red, bad])
    assert fake.calls == ["ValidateUser", "ExecuteBillQuery", "BatchSave", "ExecuteBillQuery"]
    booked, reversed_, refused = outcomes
    assert isinstance(booked, Booking) and isinstance(reversed_, Booking)
    assert booked.number and booked.number.startswith("记-") and booked.state == "audited"
    assert isinstance(refused, PermanentErpError) and "科目[9.9.9]不存在" in str(refused)
    voucher = fake.vouchers[good.posting_id]
    assert voucher["audited"] and voucher[KEY] == good.posting_id
    entries = [(e["FACCOUNTID"]["FNumber"], e["FDEBIT"], e["FCREDIT"])
               for e in voucher["model"]["FEntity"]]  # fmt: skip
    # the expense net of VAT, the input VAT, and what is owed to the employee
    assert entries == [("5.2.2", "507.34", "0"), ("2221.01.01", "45.66", "0"),
                       ("2241", "0", "553.00")]  # fmt: skip
    red_entries = fake.vouchers[red.posting_id]["model"]["FEntity"]
    assert [e["FDEBIT"] for e in red_entries[:2]] == ["-507.34", "-45.66"]  # a red voucher
    assert bad.posting_id not in fake.vouchers


def test_kingdee_a_retry_after_a_lost_answer_books_nothing_twice(kingdee) -> None:
    fake, writer = kingdee
    postings = [_posting(), _posting()]
    fake.lose_next_answers = 1
    with pytest.raises(RetryableErpError):  # saved, but the answer never came back
        writer.book_many(postings)
    assert len(fake.vouchers) == 2
    again = writer.book_many(postings)
    assert all(isinstance(o, Booking) and o.already_booked for o in again)
    assert [o.document_id for o in again if isinstance(o, Booking)] == [
        str(fake.vouchers[p.posting_id]["FVOUCHERID"]) for p in postings]  # fmt: skip
    assert len(fake.vouchers) == 2 and fake.calls.count("BatchSave") == 1


def test_kingdee_logs_in_again_when_the_session_is_lost_and_refuses_a_wrong_login(kingdee):
    fake, writer = kingdee
    assert isinstance(writer.book(_posting()), Booking)
    fake.expire_session()
    assert isinstance(writer.book(_posting()), Booking)
    assert fake.calls.count("ValidateUser") == 2
    wrong = KingdeeWriter(KingdeeSettings(base_url=str(writer._http.base_url),
                                          acct_id=fake.acct_id, user=fake.user,
                                          password="wrong"))  # fmt: skip
    with pytest.raises(RetryableErpError, match="login refused: 用户名或密码错误"):
        wrong.book(_posting())
    wrong.close()


@pytest.fixture
def yonyou() -> Iterator[tuple[Yonyou, YonyouWriter]]:
    fake = Yonyou()
    server, url = fake.serve()
    writer = YonyouWriter(YonyouSettings(base_url=url, from_account=fake.from_account,
                                         to_account=fake.to_account, app_key=fake.app_key,
                                         app_secret=fake.app_secret))  # fmt: skip
    yield fake, writer
    writer.close()
    server.shutdown()


def test_yonyou_books_each_voucher_with_its_entries_and_auxiliary_dimensions(yonyou) -> None:
    fake, writer = yonyou
    good, bad = _posting(), _posting(account="9.9.9")
    booked, refused = writer.book_many([good, bad])
    assert isinstance(booked, Booking) and booked.number == "记-0001"
    assert isinstance(refused, PermanentErpError) and "科目 9.9.9 不存在" in str(refused)
    voucher = fake.vouchers[good.posting_id]
    assert (voucher["reserve2"], voucher["voucher_making_system"]) == (good.posting_id, "CDM")
    assert [(e["account_code"], e["natural_debit_currency"], e["natural_credit_currency"])
            for e in voucher["entry"]] == [("5.2.2", "507.34", "0"), ("22210101", "45.66", "0"),
                                           ("2241", "0", "553.00")]  # fmt: skip
    assert voucher["entry"][0]["auxiliary"] == {"dept_id": "SALES", "personnel_id": "E1001"}
    assert booked.total == Decimal("553.00")


def test_yonyou_a_retry_after_a_lost_answer_and_an_expired_token_books_once(yonyou) -> None:
    fake, writer = yonyou
    posting = _posting()
    fake.lose_next_answers = 1
    with pytest.raises(RetryableErpError):
        writer.book(posting)
    fake.expire_tokens()
    again = writer.book(posting)  # a new token, then the lookup finds the voucher
    assert again.already_booked and again.document_id == fake.vouchers[posting.posting_id]["id"]
    assert len(fake.vouchers) == 1 and fake.calls.count("/system/token") == 2


def test_the_ekuaibao_voucher_write_back_sends_its_documented_fields_for_bookings_only() -> None:
    from connectors.erp.kingdee import TEMPLATES
    from connectors.sinks.webhook_out import FeedbackWebhook, FeedbackWebhookSettings
    from tests.fakes.json_server import serve

    received: list[dict] = []

    def ekuaibao(method: str, path: str, headers: dict, body: object):
        """合思's voucher write-back: flowId, voucherNo, voucherCreateTime (ms), fiscalPeriod."""
        if not (isinstance(body, dict) and isinstance(body.get("flowId"), str)
                and isinstance(body.get("voucherNo"), str) and body["voucherNo"]
                and isinstance(body.get("voucherCreateTime"), int)
                and re.fullmatch(r"\d{4}-\d{2}", str(body.get("fiscalPeriod")))):  # fmt: skip
            return 400, {"code": 400, "message": f"bad write-back {body!r}"}, {}
        received.append(body)
        return 200, {"code": 200, "value": True}, {}

    server, url = serve(ekuaibao)
    template = TEMPLATES / "ekuaibao_voucher_writeback.json"
    config = FeedbackWebhookSettings(
        url=f"{url}/api/openapi/v1/flow/voucher",
        secret="s",
        template_file=template,
        only_statuses=frozenset({"BOOKED", "ALREADY_BOOKED"}),
    )
    target = FeedbackWebhook(config, codecs=None)  # type: ignore[arg-type]
    booked = dict(SAMPLES["erp_feedback"], claim_id="FLOW-8f3a", voucher_number="记-0012")
    refused = dict(booked, status="REFUSED", voucher_number=None)
    try:
        assert target.write_many([booked, refused]) == [200, 0]
        assert [target.written(booked, 200), target.written(refused, 0)] == ["delivered", "skipped"]
    finally:
        target.http.close()
        server.shutdown()
    answered_ms = int(booked["answered_at"].timestamp() * 1000)
    assert received == [{"flowId": "FLOW-8f3a", "voucherNo": "记-0012",
                         "voucherCreateTime": answered_ms, "fiscalPeriod": "2026-11"}]  # fmt: skip
