"""The one failure record: what goes on every failure topic reads back the same."""

from erpbridge.failures import FailureRecord, Stage


def test_a_failure_record_reads_back_the_same_from_every_failure_topic() -> None:
    record = type("Record", (), {"topic": "p.postings", "partition": 2, "offset": 41,
                                 "key": b"C1", "value": b"\x00raw",
                                 "headers": [("trace", b"t1"), ("erpbridge.errors.reason", b"old")],
                                 "timestamp": 1_700_000_000_000})()  # fmt: skip
    failure = FailureRecord.of_record(
        record,
        stage=Stage.PUT,
        reason="refused",
        connector="tryton",
        error=ValueError("no such account"),
    )
    sent = failure.to_message()
    assert (sent["key"], sent["value"], sent["timestamp_ms"]) == (
        b"C1",
        b"\x00raw",
        1_700_000_000_000,
    )
    back = FailureRecord.read(type("Read", (), {**sent, "timestamp": sent["timestamp_ms"]})())
    assert back.headers == (("trace", b"t1"),)  # a replayed record's old context is dropped
    assert (back.stage, back.reason, back.connector, back.message) == (
        Stage.PUT, "refused", "tryton", "no such account")  # fmt: skip
    assert back.origin == {"topic": "p.postings", "partition": "2", "offset": "41"}


def test_a_record_without_failure_context_is_read_as_an_unreadable_failure() -> None:
    stray = type("Record", (), {"topic": "p.rejected", "partition": 0, "offset": 3, "key": None,
                                "value": b"someone else's", "headers": [],
                                "timestamp": None})()  # fmt: skip
    failure = FailureRecord.read_any(stray)
    assert (failure.stage, failure.reason) == (Stage.DECODE, "unreadable_failure")
    assert failure.value == b"someone else's" and "not a failure record" in failure.message
