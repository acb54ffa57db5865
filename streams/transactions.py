"""Exactly-once repairs for faust-streaming 0.15, each found with the SIGKILL test:

1. Faust picks the transactional producer for a send from the *output* partition, and an output
   topic the app does not consume has no partition in the consumer's metadata, so the send
   silently went through the plain producer: outputs outside any transaction, committed offsets
   on their own schedule, and duplicates after a crash (a SIGKILLed worker re-posted every claim
   since its last commit). Here a send joins the transaction of the *input* partition whose
   event is being processed, the transaction Faust commits that partition's offsets in (Kafka
   Streams does the same), so output and offsets commit or abort together.

2. Table changelog writes go through Faust's producer buffer and a background task sends them,
   possibly into the transaction *after* the one committing their event's offsets: a crash then
   loses them (measured: restored tables missed updates of committed events, and claims waited
   forever for invoice answers already given). Our agents write tables through
   :mod:`streams.table_writes` instead, which sends the changelog record from the event itself.

3. Faust commits from a timer task, concurrently with the agents, so a transaction could close
   in the middle of an event: its table write committed, its output (a moment later) in the
   next transaction. Killed before that one committed, the event was replayed against a table
   that already held its effect, judged a duplicate, and its output was never sent. Here agents
   process each event inside :class:`EventGate`, and a commit waits for the events in progress
   and holds new ones back, so a transaction holds whole events only (Kafka Streams commits
   between records for the same reason). The event is acked as the agent asks for the next
   one, before any other task runs, so its offset is in that commit.

Sends outside events do not go through here: Faust commits a transaction only when its
partition has new offsets, so a transactional send from a timer stays open until then, and
read_committed readers wait behind it (measured: a stall). The deadline ticks are sent with a
plain producer instead (:mod:`streams.agents.ticks`).

ERPBRIDGE_TRACE=1 logs every event the agents take and every commit's offsets (very verbose).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import faust
from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport

TRACE = logging.getLogger("erpbridge.trace")
TRACE.setLevel(logging.INFO if os.environ.get("ERPBRIDGE_TRACE") else logging.WARNING)


class InputPartitionTransactions(TransactionManager):  # type: ignore[misc]
    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any, *,
                   transactional_id: str | None = None) -> Any:  # fmt: skip
        event = current_event()
        if event is None:
            return await super().send(topic, key, value, partition, timestamp, headers,
                                      transactional_id=transactional_id)  # fmt: skip
        source = event.message.tp
        group = self.app.assignor.group_for_topic(source.topic)
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers,
            transactional_id=f"{self.app.conf.id}-{group}-{source.partition}")  # fmt: skip

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        if TRACE.isEnabledFor(logging.INFO):
            TRACE.info("commit offsets %s", sorted((tp.topic.split(".", 1)[-1], tp.partition, o)
                                                   for tp, o in offsets.items()))  # fmt: skip
        return bool(await super().commit(offsets, start_new_transaction=start_new_transaction))


class EventGate:
    """Agents process each event inside ``async with gate.event()``; a commit runs inside
    ``gate.exclusive()``, which waits for the events in progress and holds new ones back."""

    def __init__(self) -> None:
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()

    @asynccontextmanager
    async def event(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


class Consumer(AIOKafkaConsumer):  # type: ignore[misc]
    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        app: Any = self.app
        async with app.gate.exclusive():
            return bool(await super().force_commit(topics, start_new_transaction))


class Transport(AIOKafkaTransport):  # type: ignore[misc]
    Consumer = Consumer
    TransactionManager = InputPartitionTransactions


class App(faust.App):  # type: ignore[misc]
    """faust.App with the exactly_once repairs above; agents use ``app.gate``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = EventGate()

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
