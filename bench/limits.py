"""The broker's limits for Python clients: produce, and consume-and-produce, of the workload's own
Avro records (same sizes and keys) on the same broker, with kafka-python, aiokafka and
confluent-kafka (librdkafka). Each client: acks=all, idempotent, 5 ms linger, 256 KiB batches;
consume-and-produce reads read_committed, writes one record per record read, commits offsets
every 0.5 s, and is timed from its first record to its last one flushed and committed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from erpbridge.config import Settings

LINGER_MS = 5
BATCH_BYTES = 256 * 1024
COMMIT_EVERY_S = 0.5


def payloads(settings: Settings, workload: Any) -> list[tuple[bytes, bytes]]:
    from erpbridge.contracts.bindings import TopicCodecs

    codecs = TopicCodecs(settings)
    serializers: dict[str, Any] = {}
    out = []
    for role, key, record in workload.events:
        serializer = serializers.setdefault(role, codecs.serializer(role))
        out.append((key.encode(), bytes(serializer(record))))
    codecs.close()
    return out


def _topic(settings: Settings, name: str) -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"{settings.topic_prefix}.limits.{name}.{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)])
    admin.close()
    return topic


# produce
def produce_kafka_python(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS,
                             batch_size=BATCH_BYTES, enable_idempotence=True)  # fmt: skip
    started = time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return len(records) / elapsed


def produce_aiokafka(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    async def run() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=LINGER_MS,
                                    max_batch_size=BATCH_BYTES)  # fmt: skip
        await producer.start()
        started = time.perf_counter()
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
        elapsed = time.perf_counter() - started
        await producer.stop()
        return len(records) / elapsed

    return asyncio.run(run())


def _confluent_producer(bootstrap: str, **extra: Any) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": LINGER_MS, "batch.size": BATCH_BYTES,
                     "partitioner": "murmur2_random", **extra})  # fmt: skip


def produce_confluent(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    producer = _confluent_producer(bootstrap)
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    return len(records) / (time.perf_counter() - started)


# consume and produce
def relay_kafka_python(bootstrap: str, source: str, sink: str, total: int) -> float:
    from kafka import KafkaConsumer, KafkaProducer

    consumer = KafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"relay-{sink}",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level="read_committed",
                             max_poll_records=2000)  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS,
                             batch_size=BATCH_BYTES, enable_idempotence=True)  # fmt: skip
    seen, started, last = 0, 0.0, time.perf_counter()
    while seen < total:
        for records in consumer.poll(timeout_ms=500).values():
            if not started:
                started = time.perf_counter()
            for record in records:
                producer.send(sink, key=record.key, value=record.value)
            seen += len(records)
        if time.perf_counter() - last > COMMIT_EVERY_S:
            producer.flush()
            consumer.commit()
            last = time.perf_counter()
    producer.flush()
    consumer.commit()
    elapsed = time.perf_counter() - started
    producer.close()
    consumer.close()
    return total / elapsed


def relay_aiokafka(bootstrap: str, source: str, sink: str, total: int) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def run() -> float:
        consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap,
                                    group_id=f"relay-{sink}", enable_auto_commit=False,
                                    auto_offset_reset="earliest",
                                    isolation_level="read_committed")  # fmt: skip
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=LINGER_MS,
                                    max_batch_size=BATCH_BYTES)  # fmt: skip
        await consumer.start()
        await producer.start()
        seen, started, last = 0, 0.0, time.perf_counter()
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=500, max_records=2000)).values():
                if not started:
                    started = time.perf_counter()
                for record in records:
                    await producer.send(sink, key=record.key, value=record.value)
                seen += len(records)
            if time.perf_counter() - last > COMMIT_EVERY_S:
                await producer.flush()
                await consumer.commit()
                last = time.perf_counter()
        await producer.flush()
        await consumer.commit()
        elapsed = time.perf_counter() - started
        await producer.stop()
        await consumer.stop()
        return total / elapsed

    return asyncio.run(run())


def relay_confluent(bootstrap: str, source: str, sink: str, total: int) -> float:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"relay-{sink}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})  # fmt: skip
    consumer.subscribe([source])
    producer = _confluent_producer(bootstrap)
    seen, started, last = 0, 0.0, time.perf_counter()
    while seen < total:
        batch = consumer.consume(num_messages=2000, timeout=0.5)
        if batch and not started:
            started = time.perf_counter()
        for message in batch:
            if message.error():
                continue
            while True:
                try:
                    producer.produce(sink, message.value(), message.key())
                    break
                except BufferError:
                    producer.poll(0.01)
            seen += 1
        producer.poll(0)
        if seen and time.perf_counter() - last > COMMIT_EVERY_S:
            producer.flush()
            _commit(consumer)
            last = time.perf_counter()
    producer.flush()
    _commit(consumer)
    elapsed = time.perf_counter() - started
    consumer.close()
    return total / elapsed


def _commit(consumer: Any) -> None:
    from confluent_kafka import KafkaError, KafkaException

    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing new since the last commit
            raise


PRODUCERS = {"kafka-python": produce_kafka_python, "aiokafka": produce_aiokafka,
             "confluent-kafka": produce_confluent}  # fmt: skip
RELAYS = {"kafka-python": relay_kafka_python, "aiokafka": relay_aiokafka,
          "confluent-kafka": relay_confluent}  # fmt: skip


def measure(settings: Settings, workload: Any) -> dict[str, dict[str, float]]:
    """{client: {"produce": records/s, "consume_produce": records/s}}."""
    records = payloads(settings, workload)
    out: dict[str, dict[str, float]] = {}
    for client, produce in PRODUCERS.items():
        topic = _topic(settings, client)
        rate = produce(settings.kafka_bootstrap, topic, records)
        relay = RELAYS[client](settings.kafka_bootstrap, topic, _topic(settings, f"{client}-out"),
                               len(records))  # fmt: skip
        out[client] = {"produce": rate, "consume_produce": relay}
    return out
