"""A CSV file through the real broker, the Faust worker and the sink into a real Tryton."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.erp.tryton import TrytonWriter
from connectors.sources.batch_file import import_file
from erpbridge import codec
from erpbridge.config import Settings
from erpbridge.topic_reader import read_all
from tests.integration.pipeline import (
    Worker,
    committed_offsets,
    end_offsets,
    make_settings,
    running_workers,
    topics_of,
    wait_for,
)

pytestmark = pytest.mark.integration
TODAY = datetime.date.today()


@pytest.fixture(scope="module")
def pipeline(
    kafka_bootstrap: str, erp, tmp_path_factory
) -> Iterator[tuple[Settings, list[Worker]]]:
    workdir = tmp_path_factory.mktemp("pipeline")
    settings = make_settings(kafka_bootstrap, erp.url, erp.database, workdir)
    with running_workers(settings, workdir) as workers:
        yield settings, workers


@pytest.fixture
def writer(pipeline) -> Iterator[TrytonWriter]:
    settings, _ = pipeline
    writer = TrytonWriter.from_settings(settings)
    yield writer
    writer.close()


def _write_csv(path: Path, rows: list[str]) -> Path:
    header = "claim_id,employee_id,employee_name,expense_date,category,description,amount,currency"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8-sig")
    return path


def _all_consumed(settings: Settings, group: str, topic: str, at_least: int) -> bool:
    """The group committed every partition up to its end (a partition with no records has no
    committed offset, which counts as 0)."""
    end = end_offsets(settings, topic)
    committed = committed_offsets(settings, group, topic)
    return sum(end.values()) >= at_least and all(
        committed.get(partition, 0) == offset for partition, offset in end.items()
    )


def test_claims_from_a_file_are_posted_in_tryton(pipeline, writer, tmp_path: Path) -> None:
    settings, workers = pipeline
    run = uuid.uuid4().hex[:6].upper()
    ids = [f"C{run}-{n}" for n in range(1, 6)]
    path = _write_csv(
        tmp_path / "claims.csv",
        [
            f"{ids[0]},e2001, 赵 敏 ,{TODAY.isoformat()},travel,高铁,553.00,CNY",
            f'{ids[1]},E2002,钱 进,{TODAY:%Y年%m月%d日},lodging,酒店,"1,280.50",RMB',
            f"{ids[2]},E2001,赵 敏,{TODAY:%Y/%m/%d},meals,招待,８６.０５,cny",
            f"{ids[3]},E2003,孙 丽,{TODAY.isoformat()},travel,补贴,12.345,CNY",
            f",E2004,周 强,{TODAY.isoformat()},office,打印纸,45.00,CNY",
        ],
    )

    report = import_file(path, settings)
    assert (report.rows, report.published, report.rejected) == (5, 4, 1)

    booked = wait_for(
        lambda: _posted(writer, ids, 3),
        timeout=120,
        what="3 posted invoices in Tryton",
        workers=workers,
    )
    by_ref = {inv["reference"]: inv for inv in booked}
    assert set(by_ref) == set(ids[:3])
    expected = {
        ids[0]: ("553.00", "E2001", "赵 敏"),
        ids[1]: ("1280.50", "E2002", "钱 进"),
        ids[2]: ("86.05", "E2001", "赵 敏"),
    }
    for ref, (total, party_code, party_name) in expected.items():
        invoice = by_ref[ref]
        assert invoice["total_amount"] == Decimal(total)
        assert invoice["party."]["code"] == party_code
        assert invoice["party."]["name"] == party_name
        assert invoice["currency."]["code"] == "CNY"
        assert invoice["invoice_date"] == TODAY
        assert invoice["number"]

    rejections = wait_for(
        lambda: _rejections(settings) if len(_rejections(settings)) >= 2 else None,
        timeout=60,
        what="two rejections",
        workers=workers,
    )
    normalize = [r for r in rejections if r["stage"] == "normalize"]
    source = [r for r in rejections if r["stage"] == "source.batch_file"]
    assert [r["claim_id"] for r in normalize] == [ids[3]]
    assert "more than 2 decimals" in normalize[0]["problems"][0]
    assert source[0]["origin"] == {"file": "claims.csv", "line": 6}
    assert source[0]["problems"] == ["claim_id: required"]

    topics = topics_of(settings)
    wait_for(
        lambda: _all_consumed(settings, settings.sink_group_id, topics.claims_normalized, 3),
        timeout=60,
        what="the sink's committed offsets to reach the end of its topic",
        workers=workers,
    )
    wait_for(
        lambda: _all_consumed(settings, settings.streams_app_id, topics.claims_raw, 4),
        timeout=60,
        what="the stream processor's committed offsets to reach the end",
        workers=workers,
    )


def test_reimporting_a_file_books_nothing_twice(pipeline, writer, tmp_path: Path) -> None:
    settings, workers = pipeline
    topics = topics_of(settings)
    run = uuid.uuid4().hex[:6].upper()
    ids = [f"R{run}-{n}" for n in range(1, 3)]
    path = _write_csv(
        tmp_path / "again.csv",
        [
            f"{ids[0]},E3001,吴 刚,{TODAY.isoformat()},travel,机票,1200,CNY",
            f"{ids[1]},E3002,郑 华,{TODAY.isoformat()},meals,午餐,35.5,CNY",
        ],
    )
    import_file(path, settings)
    wait_for(
        lambda: _posted(writer, ids, 2), timeout=120, what="first import booked", workers=workers
    )
    before = sum(end_offsets(settings, topics.claims_normalized).values())

    import_file(path, settings)
    wait_for(
        lambda: _all_consumed(
            settings, settings.sink_group_id, topics.claims_normalized, before + 2
        ),
        timeout=120,
        what="the re-import consumed by the sink",
        workers=workers,
    )
    invoices = writer.find_invoices(ids)
    assert sorted(inv["reference"] for inv in invoices) == sorted(ids)
    assert all(inv["state"] == "posted" for inv in invoices)


def test_a_claim_the_erp_refuses_goes_to_the_dead_letter_topic(
    pipeline, writer, tmp_path: Path
) -> None:
    settings, workers = pipeline
    topics = topics_of(settings)
    claim_id = f"D{uuid.uuid4().hex[:6].upper()}"
    # 2001 has no fiscal year in the ERP: Tryton refuses to post, which no retry can fix.
    path = _write_csv(
        tmp_path / "old.csv", [f"{claim_id},E4001,冯 军,2001-01-15,travel,旧单据,99,CNY"]
    )
    import_file(path, settings)

    dead = wait_for(
        lambda: [
            r for r in read_all(settings, topics.erp_dead_letter) if r.key == claim_id.encode()
        ],
        timeout=120,
        what="the refused claim on the DLQ",
        workers=workers,
    )
    headers = {key: value.decode() for key, value in dead[0].headers}
    assert headers["__connect.errors.topic"] == topics.claims_normalized
    assert headers["__connect.errors.stage"] == "put"
    assert headers["__connect.errors.exception.class.name"] == "PermanentErpError"
    assert "period" in headers["__connect.errors.exception.message"]
    assert "Traceback" in headers["__connect.errors.exception.stacktrace"]
    assert codec.decode(dead[0].value)["claim_id"] == claim_id
    assert writer.find_invoices([claim_id]) == []  # nothing half-written left in the ERP
    wait_for(
        lambda: _all_consumed(settings, settings.sink_group_id, topics.claims_normalized, 1),
        timeout=60,
        what="the dead-lettered offset committed",
        workers=workers,
    )


def _posted(writer: TrytonWriter, ids: list[str], count: int) -> list[dict] | None:
    posted = [inv for inv in writer.find_invoices(ids) if inv["state"] == "posted"]
    return posted if len(posted) >= count else None


def _rejections(settings: Settings) -> list[dict]:
    return [codec.decode(r.value) for r in read_all(settings, topics_of(settings).claims_rejected)]
