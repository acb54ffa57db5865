"""Dead letters written as the ERP sink writes them, for the operator tooling's tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import FailureRecord, Stage
from erpbridge.kafka_io import durable_producer
from erpbridge.topics import Topics
from tests.contract_samples import SAMPLES


class _Postings:
    """A ConsumerRecord-like posting that failed (the input a dead letter is built from)."""

    def __init__(self, topic: str, offset: int, key: bytes, value: bytes) -> None:
        self.topic, self.partition, self.offset = topic, 0, offset
        self.key, self.value, self.headers, self.timestamp = key, value, [], int(time.time() * 1000)


def write_dead_letters(settings: Settings, count: int, tag: str = "T",
                       **changes: Any) -> list[str]:  # fmt: skip
    """``count`` postings refused by the ERP for an unknown account, on the ERP dead-letter
    topic; ``changes`` are applied to each posting. Returns their posting ids."""
    topics = Topics(settings.topic_prefix)
    codecs, producer = TopicCodecs(settings), durable_producer(settings)
    ids = [f"{tag}-{uuid.uuid4().hex[:6]}-{n}" for n in range(count)]
    try:
        for n, posting_id in enumerate(ids):
            posting = dict(SAMPLES["erp_posting"], posting_id=posting_id, claim_id=posting_id,
                           **changes)  # fmt: skip
            posting["lines"] = [dict(posting["lines"][0], account_code="9.9.9")]
            value = codecs.serializer("postings")(posting)
            failure = FailureRecord.of_record(
                _Postings(topics.postings, 40 + n, posting_id.encode(), value), stage=Stage.PUT,
                reason="refused", connector="tryton",
                error=ValueError("no account with code 9.9.9 in the ERP"))  # fmt: skip
            producer.send(topics.erp_dead_letter, **failure.to_message()).get(30)
    finally:
        producer.close()
        codecs.close()
    return ids
