"""Contracts on the real broker with the embedded registry, read back by independent clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from deploy.local import registry as local_registry
from deploy.local.process import free_port
from erpbridge.config import Settings
from erpbridge.contracts.catalog import contract
from erpbridge.contracts.serde import AvroDeserializer, AvroSerializer, value_subject
from erpbridge.registry.client import IncompatibleSchema, SchemaRegistryClient
from erpbridge.topic_reader import read_all
from tests.contract_samples import SAMPLES

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(schema_registry_url: str) -> Iterator[SchemaRegistryClient]:
    client = SchemaRegistryClient(schema_registry_url)
    yield client
    client.close()


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in values:
        producer.send(topic, value=value, key=b"k").get(timeout=30)
    producer.close()


def _topic() -> str:
    return f"contracts-{uuid.uuid4().hex[:8]}"


def test_every_contract_round_trips_through_kafka(kafka_bootstrap, registry) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    for name, sample in SAMPLES.items():
        topic, version = _topic(), contract(name).latest
        _produce(
            kafka_bootstrap,
            topic,
            [AvroSerializer(registry, value_subject(topic), version)(sample)],
        )
        (record,) = read_all(settings, topic)
        assert AvroDeserializer(registry, version)(record.value) == sample, name


def test_v1_producers_and_v2_consumers_interoperate_both_ways(kafka_bootstrap, registry) -> None:
    topic, feedback = _topic(), contract("erp_feedback")
    subject = value_subject(topic)
    v3_only = {
        "posting_date",
        "posting_kind",
        "reverses",
        "paid_minor",
        "paid_on",
        "payment_reference",
    }  # v3's, and v4's
    v2_sample = {k: v for k, v in SAMPLES["erp_feedback"].items() if k not in v3_only}
    v1_record = {k: v for k, v in v2_sample.items() if k != "voucher_number"}
    v2_record = dict(v2_sample, claim_id="EXP-2026-0002")
    _produce(
        kafka_bootstrap,
        topic,
        [
            AvroSerializer(registry, subject, feedback.version(1))(v1_record),
            AvroSerializer(registry, subject, feedback.version(2))(v2_record),
        ],
    )
    assert registry.versions(subject) == [1, 2]
    written_v1, written_v2 = read_all(Settings(kafka_bootstrap=kafka_bootstrap), topic)

    v2_reader = AvroDeserializer(registry, feedback.version(2))
    assert v2_reader(written_v1.value) == {**v1_record, "voucher_number": None}  # default fills
    assert v2_reader(written_v2.value) == v2_record

    v1_reader = AvroDeserializer(registry, feedback.version(1))
    assert v1_reader(written_v1.value) == v1_record
    assert v1_reader(written_v2.value) == {
        k: v for k, v in v2_record.items() if k != "voucher_number"
    }  # new field skipped


def test_confluents_deserializer_reads_our_topic(
    kafka_bootstrap, registry, schema_registry_url
) -> None:
    from confluent_kafka import Consumer
    from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentRegistry
    from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic = _topic()
    _produce(
        kafka_bootstrap,
        topic,
        [
            AvroSerializer(registry, value_subject(topic), contract("invoice").latest)(
                SAMPLES["invoice"]
            )
        ],
    )
    deserializer = ConfluentDeserializer(ConfluentRegistry({"url": schema_registry_url}))
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                break
        assert message is not None and not message.error(), message and message.error()
        decoded = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
    finally:
        consumer.close()
    assert decoded == SAMPLES["invoice"]


def test_an_incompatible_schema_is_refused_with_the_field_named(registry) -> None:
    subject = value_subject(_topic())
    registry.register(subject, contract("approval_decision").latest.text)
    narrowed = contract("approval_decision").latest.schema
    narrowed = {
        **narrowed,
        "fields": [
            {**f, "type": {**f["type"], "symbols": ["APPROVE", "REJECT"]}}
            if f["name"] == "decision"
            else f
            for f in narrowed["fields"]
        ],
    }
    import json

    text = json.dumps(narrowed)
    problems = registry.check_compatibility(subject, text)
    assert problems == [
        "new schema cannot read version 1: decision: enum Decision cannot read "
        "symbol(s) RETURN and has no default symbol"
    ]
    with pytest.raises(IncompatibleSchema, match="decision: enum Decision"):
        registry.register(subject, text)


def test_ids_survive_a_restart_and_two_registries_agree(kafka_bootstrap) -> None:
    topic_env = ("ERPBRIDGE_SCHEMA_REGISTRY_TOPIC", f"_schemas_restart_{uuid.uuid4().hex[:8]}")
    env = (("ERPBRIDGE_KAFKA_BOOTSTRAP", kafka_bootstrap), topic_env)
    first = local_registry.RegistryConfig(
        port=free_port(), name=f"sr-a-{uuid.uuid4().hex[:6]}", env=env
    )
    second = local_registry.RegistryConfig(
        port=free_port(), name=f"sr-b-{uuid.uuid4().hex[:6]}", env=env
    )
    local_registry.up(first)
    try:
        a = SchemaRegistryClient(first.url)
        claim_id = a.register("claims-value", contract("expense_claim").latest.text)
        feedback_id = a.register("feedback-value", contract("erp_feedback").version(1).text)
        local_registry.down(first)
        local_registry.up(second)  # a new process: everything comes back from the topic
        b = SchemaRegistryClient(second.url)
        assert b.lookup("claims-value", contract("expense_claim").latest.text).schema_id == claim_id
        assert b.latest("feedback-value").schema_id == feedback_id
        local_registry.up(first)  # now two registries share the topic
        a = SchemaRegistryClient(first.url)
        new_in_a = a.register("invoices-value", contract("invoice").latest.text)
        new_in_b = b.register("postings-value", contract("erp_posting").latest.text)
        assert len({claim_id, feedback_id, new_in_a, new_in_b}) == 4
        assert (
            SchemaRegistryClient(second.url)
            .lookup("invoices-value", contract("invoice").latest.text)
            .schema_id
            == new_in_a
        )
        assert a.schema_by_id(new_in_b) == contract("erp_posting").latest.text
    finally:
        local_registry.down(first)
        local_registry.down(second)
