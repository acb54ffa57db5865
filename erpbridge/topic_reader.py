"""Read a topic from the beginning to its current end, without a consumer group (for inspection)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import FailureRecord
from erpbridge.kafka_security import client_options
from erpbridge.reference import BadReferenceEntry, ReferenceData
from erpbridge.topics import Topics


def read_all(settings: Settings, topic: str, timeout_s: float = 10.0,
             until: Mapping[int, int] | None = None) -> list[ConsumerRecord]:  # fmt: skip
    """Every committed record of ``topic`` (read_committed), from the beginning to its end as of
    now, or to the offsets ``until`` names per partition (exclusive; a partition not named: to
    its end)."""
    consumer = KafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        if until is not None:
            end = {tp: min(offset, until.get(tp.partition, offset)) for tp, offset in end.items()}
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend(r for r in batch if r.offset < end[tp])
        return records
    finally:
        consumer.close()


def read_latest(settings: Settings, topic: str, timeout_s: float = 60.0) -> dict[bytes, bytes]:
    """A compacted topic folded to each key's latest value (a tombstone removes the key)."""
    latest: dict[bytes, bytes] = {}
    for record in read_all(settings, topic, timeout_s=timeout_s):
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = record.value
    return latest


def read_reference(settings: Settings) -> ReferenceData:
    """The reference topic applied record by record, as the processors' view reads it (an
    entry that does not read is skipped, as they skip it)."""
    data = ReferenceData(rate_max_age_days=settings.rate_max_age_days)
    for record in read_all(settings, Topics(settings.topic_prefix).reference, timeout_s=60):
        try:
            data.apply((record.key or b"").decode(), record.value)
        except (BadReferenceEntry, ValueError):
            continue
    return data


def read_last(settings: Settings, topic: str, partition: int = 0,
              reader: KafkaConsumer | None = None) -> ConsumerRecord | None:  # fmt: skip
    """The last committed record of one partition (None when it has none). ``reader``: a
    read_committed consumer without a group to use (and keep), instead of a new one."""
    consumer = reader or KafkaConsumer(**client_options(settings), enable_auto_commit=False,
                                       isolation_level="read_committed")  # fmt: skip
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        for back in range(1, 50):  # transaction markers take offsets: step back over them
            if end - back < 0:
                return None
            consumer.seek(tp, end - back)
            records = [r for batch in consumer.poll(timeout_ms=2000).values() for r in batch
                       if r.offset < end]  # fmt: skip
            if records:
                return records[-1]
        return None
    finally:
        if reader is None:
            consumer.close()


def read_rejections(settings: Settings) -> list[FailureRecord]:
    """Every failure record on the rejection topic."""
    return read_failures(settings, "rejected")


def read_failures(settings: Settings, role: str) -> list[FailureRecord]:
    """Every failure record on a failure topic (``rejected``, ``erp_dead_letter``,
    ``feedback_dead_letter``); a record without failure context is listed as unreadable."""
    topic = str(getattr(Topics(settings.topic_prefix), role))
    return [FailureRecord.read_any(record) for record in read_all(settings, topic)]


def read_statuses(settings: Settings) -> list[dict[str, Any]]:
    """Every ClaimStatus record on the claim-status topic, in offset order per claim."""
    return read_records(settings, "claim_status")


def read_records(settings: Settings, role: str) -> list[dict[str, Any]]:
    """Every record of a pipeline topic, decoded with its contract (for inspection and tests)."""
    codecs = TopicCodecs(settings)
    try:
        return [codecs.deserializer(role)(record.value)
                for record in read_all(settings, codecs.topic(role))]  # fmt: skip
    finally:
        codecs.close()
