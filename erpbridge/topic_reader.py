"""Read a topic from the beginning to its current end, without a consumer group (for inspection)."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from erpbridge import codec
from erpbridge.config import Settings
from erpbridge.topics import Topics


def read_all(settings: Settings, topic: str, timeout_s: float = 10.0) -> list[ConsumerRecord]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
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
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def read_rejections(settings: Settings) -> list[dict[str, Any]]:
    """Every decodable record on the rejection topic."""
    rejections = []
    for record in read_all(settings, Topics(settings.topic_prefix).claims_rejected):
        try:
            rejections.append(codec.decode(record.value))
        except codec.DecodeError:
            continue
    return rejections


def describe(rejection: dict[str, Any]) -> str:
    return "; ".join(rejection.get("problems") or [rejection.get("reason", "?")])
