"""A CSV file through the real broker, the streams worker and the sink into a real Tryton."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from kafka import KafkaProducer

from connectors.erp.tryton import TrytonWriter
from connectors.sources.batch_file import import_file
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import FailureRecord
from erpbridge.kafka_io import committed_offsets, end_offsets
from erpbridge.topic_reader import read_all, read_rejections
from tests.integration.pipeline import (
    Worker,
    make_settings,
    running_workers,
    topics_of,
    wait_for,
)

pytestmark = pytest.mark.integration
TODAY = datetime.date.today()
SOURCE = f"e2e-{uuid.uuid4().hex[:8]}"  # the import ledger is per source: fresh each run


@pytest.fixture(scope="module")
def pipeline(
    kafka_bootstrap: str, schema_registry_url: str, redis_url: str, erp, tmp_path_factory
) -> Iterator[tuple[Settings, list[Worker]]]:
    workdir = tmp_path_factory.mktemp("pipeline")
    # Claims exported once approved (the expense platform ran the workflow), by employees the
    # mapping does not list: booked under their own codes. Correlation has its own tests.
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, workdir,
                             streams_require_approval=False,
                             streams_require_employee_mapping=False)  # fmt: skip
    with running_workers(settings, workdir, erp=erp.settings) as workers:
        yield settings, workers


@pytest.fixture
def writer(pipeline, erp) -> Iterator[TrytonWriter]:
    writer = TrytonWriter.from_settings(erp.settings)
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
    path = _write_csv(tmp_path / "claims.csv", [
        f"{ids[0]},e2001, 赵 敏 ,{TODAY.isoformat()},travel,高铁,553.00,CNY",
        f"{ids[1]},E2002,钱 进,{TODAY:%Y年%m月%d日},lodging,酒店,\"1,280.50\",RMB",
        f"{ids[2]},E2001,赵 敏,{TODAY:%Y/%m/%d},meals,招待,８６.０５,cny",
        f"{ids[3]},E2003,孙 丽,{TODAY.isoformat()},travel,补贴,12.345,CNY",
        f",E2004,周 强,{TODAY.isoformat()},office,打印纸,45.00,CNY",
        f"{ids[4]},E2005,吴 昊,{TODAY.isoformat()},travel,Hotel in Singapore,120.00,USD",
    ])  # fmt: skip

    # each worker says when it is ready: the processors after their tables and reference data,
    # the sink once in its group with the ERP answering
    # (a rebalance just after may read the tables again: it says so, 503, until it is done)
    ready = (200, {"ready": True, "not_ready": {}})
    for worker in workers:
        assert wait_for(lambda w=worker: w.readiness() == ready, timeout=120,
                        what=f"{worker.name} ready", workers=workers)  # fmt: skip
    report = import_file(path, settings, SOURCE)
    assert (report.rows, report.published, report.rejected) == (6, 4, 2)

    booked = wait_for(lambda: _posted(writer, ids, 3), timeout=120,
                      what="3 posted invoices in Tryton", workers=workers)  # fmt: skip
    by_ref = {inv["reference"]: inv for inv in booked}
    assert set(by_ref) == set(ids[:3])
    expected = {ids[0]: ("553.00", "E2001", "赵 敏"), ids[1]: ("1280.50", "E2002", "钱 进"),
                ids[2]: ("86.05", "E2001", "赵 敏")}  # fmt: skip
    for ref, (total, party_code, party_name) in expected.items():
        invoice = by_ref[ref]
        assert invoice["total_amount"] == Decimal(total)
        assert invoice["party."]["code"] == party_code
        assert invoice["party."]["name"] == party_name
        assert invoice["currency."]["code"] == "CNY"
        assert invoice["invoice_date"] == TODAY
        assert invoice["number"]

    rejections = wait_for(lambda: _rejections(settings, 3), timeout=60,
                          what="three rejections", workers=workers)  # fmt: skip
    at_source = sorted((r for r in rejections if r.stage == "source.batch_file"),
                       key=lambda r: r.origin["line"])  # fmt: skip
    assert [(r.entity_id, r.origin, list(r.problems)) for r in at_source] == [
        (ids[3], {"file": "claims.csv", "line": "5"},
         ["lines[0]: 12.345 has more than 2 decimals for CNY"]),
        (None, {"file": "claims.csv", "line": "6"}, ["claim_id: Field required"]),
    ]  # fmt: skip
    assert json.loads(at_source[0].value)["amount"] == "12.345"
    (normalize,) = [r for r in rejections if r.stage == "normalize"]
    assert normalize.entity_id == ids[4]
    assert normalize.reason == "no_exchange_rate"
    assert normalize.origin["line"] == "7"
    assert normalize.origin["topic"] == topics_of(settings).claims_raw
    assert normalize.value[:1] == b"\x00"  # the ExpenseClaim bytes, as they were

    topics = topics_of(settings)
    wait_for(lambda: _all_consumed(settings, settings.sink_group("tryton"), topics.postings, 3),
             timeout=60, what="the sink's committed offsets to reach the end of its topic",
             workers=workers)  # fmt: skip
    wait_for(lambda: _all_consumed(settings, settings.streams_app_id, topics.claims_raw, 4),
             timeout=60, what="the stream processor's committed offsets to reach the end",
             workers=workers)  # fmt: skip

    streams_metrics, sink_metrics = (worker.metrics() for worker in workers)
    assert 'erpbridge_stream_events_total{agent="claims",outcome="out"} 3.0' in (streams_metrics)
    assert 'erpbridge_stream_events_total{agent="claims",outcome="rejected"} 1.0' in (
        streams_metrics
    )
    assert 'erpbridge_sink_records_total{outcome="booked",sink="tryton"} 3.0' in sink_metrics


def test_reimporting_a_file_books_nothing_twice(pipeline, writer, tmp_path: Path) -> None:
    settings, workers = pipeline
    topics = topics_of(settings)
    run = uuid.uuid4().hex[:6].upper()
    ids = [f"R{run}-{n}" for n in range(1, 3)]
    path = _write_csv(tmp_path / "again.csv", [
        f"{ids[0]},E3001,吴 刚,{TODAY.isoformat()},travel,机票,1200,CNY",
        f"{ids[1]},E3002,郑 华,{TODAY.isoformat()},meals,午餐,35.5,CNY",
    ])  # fmt: skip
    assert import_file(path, settings, SOURCE).published == 2
    wait_for(lambda: _posted(writer, ids, 2), timeout=120, what="first import booked",
             workers=workers)  # fmt: skip

    # The source remembers what it published: the same file again publishes nothing.
    again = import_file(path, settings, SOURCE)
    assert (again.rows, again.published, again.already_imported) == (2, 0, 2)

    # The stream processor drops the same claim sent again (e.g. a replayed dead letter) ...
    raw = [r for r in read_all(settings, topics.claims_raw) if r.key == ids[0].encode()]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    producer.send(topics.claims_raw, key=raw[0].key, value=raw[0].value).get(timeout=30)
    wait_for(lambda: _all_consumed(settings, settings.streams_app_id, topics.claims_raw, 1),
             timeout=60, what="the resent claim consumed", workers=workers)  # fmt: skip
    assert 'outcome="duplicate"} 1.0' in workers[0].metrics()
    assert [r.key for r in read_all(settings, topics.postings)].count(ids[0].encode()) == 1

    # ... and the sink books nothing new for the same posting delivered twice.
    (posting,) = [r for r in read_all(settings, topics.postings) if r.key == ids[0].encode()]
    before = sum(end_offsets(settings, topics.postings).values())
    producer.send(topics.postings, key=posting.key, value=posting.value).get(timeout=30)
    producer.close()
    wait_for(
        lambda: _all_consumed(settings, settings.sink_group("tryton"), topics.postings, before + 1),
        timeout=120,
        what="the resent posting consumed by the sink",
        workers=workers,
    )
    invoices = writer.find_invoices(ids)
    assert sorted(inv["reference"] for inv in invoices) == sorted(ids)
    assert all(inv["state"] == "posted" for inv in invoices)
    assert 'erpbridge_sink_records_total{outcome="already_booked",sink="tryton"} 1.0' in (
        workers[1].metrics()
    )


def test_a_claim_the_erp_refuses_goes_to_the_dead_letter_topic(
    pipeline, writer, tmp_path: Path
) -> None:
    settings, workers = pipeline
    topics = topics_of(settings)
    claim_id = f"D{uuid.uuid4().hex[:6].upper()}"
    # 2001 has no fiscal year in the ERP: Tryton refuses to post, which no retry can fix.
    row = f"{claim_id},E4001,冯 军,2001-01-15,travel,旧单据,99,CNY"
    import_file(_write_csv(tmp_path / "old.csv", [row]), settings, SOURCE)

    dead = wait_for(
        lambda: [
            r for r in read_all(settings, topics.erp_dead_letter) if r.key == claim_id.encode()
        ],
        timeout=120,
        what="the refused claim on the DLQ",
        workers=workers,
    )
    headers = {key: value.decode() for key, value in dead[0].headers}
    assert headers["__connect.errors.topic"] == topics.postings
    assert headers["__connect.errors.stage"] == "put"
    assert headers["__connect.errors.exception.class.name"] == "PermanentErpError"
    assert "period" in headers["__connect.errors.exception.message"]
    assert "Traceback" in headers["__connect.errors.exception.stacktrace"]
    codecs = TopicCodecs(settings)
    assert codecs.deserializer("postings")(dead[0].value)["claim_id"] == claim_id
    codecs.close()
    assert writer.find_invoices([claim_id]) == []  # nothing half-written left in the ERP
    wait_for(
        lambda: _all_consumed(settings, settings.sink_group("tryton"), topics.postings, 1),
        timeout=60,
        what="the dead-lettered offset committed",
        workers=workers,
    )


def test_bytes_that_are_not_a_claim_are_rejected_and_the_agent_goes_on(
    pipeline, writer, tmp_path: Path
) -> None:
    settings, workers = pipeline
    topics = topics_of(settings)
    garbage = b'{"claim_id": "not avro"}'
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    producer.send(topics.claims_raw, key=b"GARBAGE-1", value=garbage).get(timeout=30)
    producer.close()
    claim_id = f"G{uuid.uuid4().hex[:6].upper()}"
    row = f"{claim_id},E5001,何 静,{TODAY.isoformat()},meals,工作餐,42,CNY"
    import_file(_write_csv(tmp_path / "after.csv", [row]), settings, SOURCE)

    wait_for(lambda: _posted(writer, [claim_id], 1), timeout=120,
             what="the claim after the garbage booked", workers=workers)  # fmt: skip
    (undecodable,) = [r for r in read_rejections(settings) if r.reason == "undecodable"]
    assert undecodable.stage == "normalize"
    assert undecodable.value == garbage
    assert "magic byte 0x7b, expected 0x00" in list(undecodable.problems)[0]
    assert undecodable.origin["topic"] == topics.claims_raw


def _posted(writer: TrytonWriter, ids: list[str], count: int) -> list[dict] | None:
    posted = [inv for inv in writer.find_invoices(ids) if inv["state"] == "posted"]
    return posted if len(posted) >= count else None


def _rejections(settings: Settings, count: int) -> list[FailureRecord] | None:
    found = read_rejections(settings)
    return found if len(found) >= count else None


def test_bytes_that_are_not_a_posting_go_to_the_erp_dead_letter_topic(pipeline) -> None:
    settings, workers = pipeline
    topics = topics_of(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    # A Confluent header naming a schema id no registry has, then a few bytes.
    bogus = b"\x00\x00\x01\x86\xa0\x02ab"
    producer.send(topics.postings, key=b"BOGUS-1", value=bogus,
                  headers=[("trace", b"t-1")]).get(timeout=30)  # fmt: skip
    producer.close()

    dead = wait_for(lambda: [r for r in read_all(settings, topics.erp_dead_letter)
                             if r.key == b"BOGUS-1"],
                    timeout=60, what="the bogus posting on the DLQ", workers=workers)  # fmt: skip
    assert dead[0].value == bogus  # kept byte for byte
    headers = dict(dead[0].headers)
    assert headers["trace"] == b"t-1"  # the original headers stay
    assert headers["__connect.errors.stage"] == b"convert"
    assert headers["__connect.errors.exception.class.name"] == b"UnknownSchemaId"
    assert b"schema id 100000" in headers["__connect.errors.exception.message"]
