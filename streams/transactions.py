"""Exactly-once for agents that write to topics they do not read.

faust-streaming 0.15 picks the transactional producer for a send from the *output* partition,
and an output topic the app does not consume has no partition in the consumer's metadata, so the
send silently goes through the plain producer: outputs outside any transaction, committed
offsets on their own schedule, and duplicates after a crash (measured: a SIGKILLed worker
re-posted every claim since its last commit). Here a send joins the transaction of the *input*
partition whose event is being processed, the transaction Faust commits that partition's
offsets in (Kafka Streams does the same), so output and offsets commit or abort together.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport


class InputPartitionTransactions(TransactionManager):  # type: ignore[misc]
    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any, *,
                   transactional_id: str | None = None) -> Any:  # fmt: skip
        event = current_event()
        if event is None:
            # Table changelogs are sent from the producer buffer, after the event: Faust routes
            # those right (changelog topics are co-partitioned members of the app's groups).
            return await super().send(topic, key, value, partition, timestamp, headers,
                                      transactional_id=transactional_id)  # fmt: skip
        source = event.message.tp
        group = self.app.assignor.group_for_topic(source.topic)
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers,
            transactional_id=f"{self.app.conf.id}-{group}-{source.partition}")  # fmt: skip

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        # Hand everything still buffered (table changelog writes) to its transactional producer
        # first, so it commits with the offsets of the events that caused it.
        await self.app.producer.buffer.flush()
        return bool(await super().commit(offsets, start_new_transaction=start_new_transaction))


class Transport(AIOKafkaTransport):  # type: ignore[misc]
    TransactionManager = InputPartitionTransactions


class App(faust.App):  # type: ignore[misc]
    """faust.App whose exactly_once sends join the input partition's transaction."""

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
