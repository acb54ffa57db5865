"""kafka-python clients, configured once: a durable producer, a manual-commit consumer; topic
end offsets and a group's committed offsets."""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, TopicAuthorizationFailedError

from erpbridge.config import Settings
from erpbridge.kafka_security import client_options
from erpbridge.topics import Topics

log = logging.getLogger(__name__)


def durable_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """acks=all + idempotence: a retried send is written once, in order, per partition."""
    options: dict[str, Any] = dict(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        retries=2147483647,
        max_in_flight_requests_per_connection=5,
    )
    options.update(overrides)
    return KafkaProducer(**options)


def manual_commit_consumer(
    settings: Settings, group_id: str, *topics: str, **overrides: Any
) -> KafkaConsumer:
    options: dict[str, Any] = dict(
        **client_options(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        max_poll_records=100,
    )
    options.update(overrides)
    return KafkaConsumer(*topics, **options)


def ensure_topics(settings: Settings) -> list[str]:
    """Create the pipeline's topics (idempotent); return the ones created now."""
    admin = KafkaAdminClient(**client_options(settings))
    try:
        topics = Topics(settings.topic_prefix)
        existing = set(admin.list_topics())
        wanted = [name for name in topics.all() if name not in existing]
        if not wanted:
            return []
        try:
            admin.create_topics([_new_topic(topics, name, settings) for name in wanted])
        except TopicAlreadyExistsError:
            pass
        except TopicAuthorizationFailedError:
            # a component's principal sees and may create only its own topics (erpbridge.access):
            # where the broker authorizes, an operator creates them, and a client that needs
            # one it cannot see fails on its first use, naming the topic
            log.info("not allowed to create topics here (%d not visible to %s); they are an "
                     "operator's to create", len(wanted),
                     settings.kafka_sasl_username or "this client")  # fmt: skip
            return []
        return wanted
    finally:
        admin.close()


def admin_when_broker_answers(settings: Settings) -> KafkaAdminClient:
    """An admin client, once a broker answers (at most ``settings.kafka_start_wait_s``): a
    worker started before its broker (a compose or Kubernetes start, where every pod starts at
    once) waits instead of exiting at once and being restarted over and over. Raises
    ``SystemExit`` with the reason after that, for its supervisor to start it again."""
    deadline = time.monotonic() + settings.kafka_start_wait_s
    while True:
        try:
            return KafkaAdminClient(**client_options(settings))
        except KafkaError as exc:  # kafka-python gives up bootstrapping after about 30 s
            if time.monotonic() >= deadline:
                raise SystemExit(f"no Kafka broker answers at {settings.kafka_bootstrap} after "
                                 f"{settings.kafka_start_wait_s:.0f} s ({exc}): exiting, to be "
                                 "started again") from exc  # fmt: skip
            log.info("waiting for a Kafka broker at %s: %s", settings.kafka_bootstrap, exc)
            time.sleep(2.0)


def wait_for_topics(settings: Settings, names: list[str], timeout_s: float) -> list[str]:
    """Wait until every topic of ``names`` exists (at most ``timeout_s``, once a broker
    answers); return the ones still missing then (empty: all there)."""
    admin = admin_when_broker_answers(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            missing = sorted(set(names) - set(admin.list_topics()))
            if not missing or time.monotonic() >= deadline:
                return missing
            log.info("waiting for %d topic(s) to be created: %s", len(missing), missing)
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    finally:
        admin.close()


def _new_topic(topics: Topics, name: str, settings: Settings) -> NewTopic:
    copies = settings.topic_replication_factor
    if name in topics.compacted():
        return NewTopic(name, 1, copies, topic_configs=settings.topic_configs(
            **{"cleanup.policy": "compact"}))  # fmt: skip
    if name in topics.kept_forever():
        return NewTopic(name, 1, copies, topic_configs=settings.topic_configs(
            **{"retention.ms": "-1", "retention.bytes": "-1"}))  # fmt: skip
    return NewTopic(name, settings.topic_partitions, copies, topic_configs=settings.topic_configs())


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Per partition, the offset the next record will get (read_committed: the last stable)."""
    consumer = KafkaConsumer(**client_options(settings),
                             isolation_level="read_committed")  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Per partition, the consumer group's committed offset (partitions it never committed:
    absent)."""
    admin = KafkaAdminClient(**client_options(settings))
    try:
        for attempt in range(10):
            try:
                offsets = admin.list_group_offsets({group: None}).get(group, {})
                break
            except KafkaError as exc:  # the group's coordinator moving or loading: ask again
                if not exc.retriable or attempt == 9:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()
            if tp.topic == topic and meta.offset >= 0}  # fmt: skip
