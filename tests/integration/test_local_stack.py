"""The services the fixtures provide answer, and starting them again changes nothing."""

from __future__ import annotations

import uuid

import pytest
import redis

from deploy.local import kafka as local_kafka
from deploy.local import redis as local_redis

pytestmark = pytest.mark.integration


def test_redis_serves_reads_and_writes(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"erpbridge:test:{uuid.uuid4().hex}"
    client.set(key, "张伟", ex=30)
    assert client.get(key) == "张伟".encode()
    assert local_redis.up().startswith("redis: already up")


def test_a_second_kafka_up_is_a_no_op(kafka_bootstrap: str) -> None:
    if kafka_bootstrap != local_kafka.KafkaConfig().bootstrap:
        pytest.skip("the broker is not the local launcher's (KAFKA_BOOTSTRAP or testcontainers)")
    pid = local_kafka.BROKER.pid()
    assert local_kafka.up().startswith("kafka: already up")
    assert local_kafka.BROKER.pid() == pid
    assert local_kafka.broker_answers(kafka_bootstrap)
