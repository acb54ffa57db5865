"""The local 3-broker KRaft cluster: the project's topics take their replication from settings, an
acks=all stream of writes survives a broker SIGKILLed in the middle with nothing lost or
doubled, the broker catches up when it is back, and with two brokers gone a write is refused
instead of being kept in one copy."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from deploy.local.kafka_cluster import KafkaCluster
from erpbridge.config import Settings
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.topics import Topics

pytestmark = pytest.mark.integration


def _settings(cluster: KafkaCluster) -> Settings:
    """Settings for a fresh set of topics on ``cluster``, every broker of which is up."""
    cluster.up()  # a no-op when they are
    return Settings(kafka_bootstrap=cluster.bootstrap, topic_prefix=f"c{uuid.uuid4().hex[:8]}",
                    topic_replication_factor=3, topic_min_insync_replicas=2)  # fmt: skip


def _isr(admin: KafkaAdminClient, topic: str) -> dict[int, list[int]]:
    (described,) = admin.describe_topics([topic])
    return {p["partition_index"]: sorted(p["isr_nodes"]) for p in described["partitions"]}


@pytest.mark.long  # the 3-broker cluster takes 40-80 s to start: make chaos
def test_the_projects_topics_take_their_replication_from_settings(kafka_cluster) -> None:
    cluster = kafka_cluster
    settings = _settings(cluster)
    ensure_topics(settings)
    topics = Topics(settings.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        for name in (topics.claims_raw, topics.postings, topics.reference):
            deadline = time.monotonic() + 30
            while not (partitions := admin.describe_topics([name])[0]["partitions"]):
                assert time.monotonic() < deadline, f"{name} has no partitions after 30 s"
                time.sleep(0.5)  # a new topic's metadata reaches every broker in a moment
            assert {len(p["replica_nodes"]) for p in partitions} == {3}
        resource = ConfigResource(ConfigResourceType.TOPIC, topics.postings)
        answer = admin.describe_configs([resource])  # {type: {name: {key: {data}}}}
        (configs,) = (named[topics.postings] for named in answer.values())
        found = configs["min.insync.replicas"]
        assert (found.get("value") if isinstance(found, dict) else found) == "2", found
    finally:
        admin.close()


@pytest.mark.long  # 30-40 s each: make chaos (make test's fault suite kills brokers)
def test_acks_all_writes_survive_a_broker_killed_mid_stream(kafka_cluster) -> None:
    cluster = kafka_cluster
    settings = _settings(cluster)
    ensure_topics(settings)
    topic = Topics(settings.topic_prefix).postings
    producer = durable_producer(settings, request_timeout_ms=10_000)
    started = time.monotonic()
    try:
        futures = []
        for n in range(3000):
            if n == 1000:
                cluster.kill(2)  # a leader of some partitions, gone without a word
            futures.append(producer.send(topic, key=f"k{n % 97}".encode(), value=str(n).encode()))
        producer.flush(timeout=120)
        for future in futures:
            future.get(timeout=60)  # every write acknowledged by at least two brokers
    finally:
        producer.close()
    took = time.monotonic() - started
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, isolation_level="read_committed",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10_000)  # fmt: skip
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    values = [record.value.decode() for record in consumer]
    consumer.close()
    assert sorted(values, key=int) == [str(n) for n in range(3000)]  # none lost, none twice
    print(f"3,000 acks=all writes with broker 2 killed after 1,000: {took:.1f} s")

    print(cluster.start(2))
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        deadline = time.monotonic() + 90
        while set(map(tuple, _isr(admin, topic).values())) != {(1, 2, 3)}:
            assert time.monotonic() < deadline, f"ISR not back to 3: {_isr(admin, topic)}"
            time.sleep(1)
    finally:
        admin.close()


@pytest.mark.long  # 30-40 s each: make chaos (make test's fault suite kills brokers)
def test_with_two_brokers_gone_a_write_is_refused_not_kept_in_one_copy(kafka_cluster) -> None:
    cluster = kafka_cluster
    settings = _settings(cluster)
    ensure_topics(settings)
    topic = Topics(settings.topic_prefix).postings
    cluster.kill(2)
    cluster.kill(3)
    producer = durable_producer(settings, request_timeout_ms=3_000, delivery_timeout_ms=8_000,
                                max_block_ms=8_000)  # fmt: skip
    try:
        with pytest.raises(KafkaError):  # refused (or no leader to take it): never acknowledged
            producer.send(topic, key=b"k", value=b"alone").get(timeout=30)
    finally:
        cluster.up()  # the two back first: the quorum needs them
        with contextlib.suppress(KafkaError):  # the record it could not deliver
            producer.close(timeout=5)
