"""Exactly-once for agents that write to topics they do not read, and for sends outside events.

Four gaps in faust-streaming 0.15's exactly_once, all measured here:

1. Faust picks the transactional producer for a send from the *output* partition, and an output
   topic the app does not consume has no partition in the consumer's metadata, so the send
   silently went through the plain producer: outputs outside any transaction, committed offsets
   on their own schedule, and duplicates after a crash (a SIGKILLed worker re-posted every claim
   since its last commit). Here a send joins the transaction of the *input* partition whose
   event is being processed, the transaction Faust commits that partition's offsets in (Kafka
   Streams does the same), so output and offsets commit or abort together.

2. Table changelog writes go through Faust's producer buffer and are sent by a background task.
   ``ProducerBuffer.flush`` returns once the queue is empty, while the last write may still be on
   its way to the producer: it then lands in the *next* transaction, after the commit of the
   offsets of the event that caused it, and a crash loses it (measured: after a SIGKILL the
   restored tables missed updates of committed events, and claims waited forever for invoice
   answers that had already been given). Here the buffer counts its in-flight sends, and a
   commit waits for the queue *and* the in-flight sends. Our agents go further and write
   their tables through :mod:`streams.table_writes`, which sends the changelog record from
   the event itself, awaited, so it cannot miss the event's transaction at all.

3. Faust commits from a timer task, concurrently with the agents, so a transaction could close
   in the middle of an event: the event's table write committed, its output (sent a moment
   later) in the next transaction. Killed before that one committed, the event was replayed
   against a table that already held its effect, judged a duplicate, and its output was never
   sent (measured: one claim of 3,500 waited forever for an invoice it had cited in an aborted
   transaction). Here agents process each event inside :class:`EventGate` and a commit waits for
   the events in progress and holds new ones back, so a transaction holds whole events only
   (Kafka Streams commits between records for the same reason). The event is acked as the
   agent asks for the next one, before any other task runs, so its offset is in that commit.

4. Faust commits a partition's transaction only when that partition has new offsets to commit.
   A send outside any event (our deadline ticks; table changelog writes flushed after a commit)
   lands in a transaction that stays open until its partition consumes again, and read_committed
   readers stop at it: the claim side waited for invoice answers behind an open transaction that
   held a tick, while nothing new could arrive to commit it (a stall, about 1 run in 3 of the
   SIGKILL test). Here every transaction that was written to is committed at each commit interval,
   with or without offsets.
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
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.transport.producer import ProducerBuffer

log = logging.getLogger(__name__)
# ERPBRIDGE_TRACE=1 logs every commit's offsets and every event (diagnostics, very verbose).
TRACE = logging.getLogger("erpbridge.trace")
TRACE.setLevel(logging.INFO if os.environ.get("ERPBRIDGE_TRACE") else logging.WARNING)
_BUFFER_DRAIN_S = 30.0


class InputPartitionTransactions(TransactionManager):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written: set[str] = set()  # transactional ids with sends not committed yet

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any, *,
                   transactional_id: str | None = None) -> Any:  # fmt: skip
        event = current_event()
        if event is None:
            # Table changelogs (from the producer buffer) and timer sends: Faust routes those
            # by their own partition (changelog and internal topics are co-partitioned members
            # of the app's topic groups). Note the transaction, so that it gets committed.
            p = self.consumer.key_partition(topic, key, partition)
            if p is not None:
                group = self.app.assignor.group_for_topic(topic)
                self._written.add(f"{self.app.conf.id}-{group}-{p}")
            return await super().send(topic, key, value, partition, timestamp, headers,
                                      transactional_id=transactional_id)  # fmt: skip
        source = event.message.tp
        group = self.app.assignor.group_for_topic(source.topic)
        tid = f"{self.app.conf.id}-{group}-{source.partition}"
        self._written.add(tid)
        return await self.producer.send(topic, key, value, partition, timestamp, headers,
                                        transactional_id=tid)  # fmt: skip

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        # Hand everything still buffered (table changelog writes) to its transactional producer
        # first, so it commits with the offsets of the events that caused it.
        await self._drain_buffer()
        if TRACE.isEnabledFor(logging.INFO):
            TRACE.info("commit offsets %s", sorted((tp.topic.split(".", 1)[-1], tp.partition, o)
                                                   for tp, o in offsets.items()))  # fmt: skip
        for tp in offsets:
            group = self.app.assignor.group_for_topic(tp.topic)
            self._written.discard(f"{self.app.conf.id}-{group}-{tp.partition}")
        return bool(await super().commit(offsets, start_new_transaction=start_new_transaction))

    async def commit_written(self) -> None:
        """Commit (and restart) every transaction written to since its last commit."""
        await self._drain_buffer()
        written, self._written = self._written, set()
        producer: Any = self.producer  # Faust's aiokafka Producer: its locks and producers
        for tid in sorted(written):
            async with producer._trn_locks[tid]:  # Faust's per-transaction lock
                txn_producer = producer._transaction_producers.get(tid)
                if txn_producer is None:  # its partition was revoked: aborted with it
                    continue
                await txn_producer.commit_transaction()
                await txn_producer.begin_transaction()

    async def _drain_buffer(self) -> None:
        buffer = self.app.producer.buffer
        if isinstance(buffer, TrackedBuffer):
            await buffer.drain()


class TrackedBuffer(ProducerBuffer):  # type: ignore[misc]
    """Faust's producer buffer, plus a count of sends taken off the queue but not done yet."""

    in_flight = 0

    async def _send_pending(self, fut: Any) -> None:
        self.in_flight += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.in_flight -= 1

    async def drain(self) -> None:
        """Wait until every buffered write has been handed to its (transactional) producer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUFFER_DRAIN_S
        while (self.size or self.in_flight) and loop.time() < deadline:
            await asyncio.sleep(0.001)
        if self.size or self.in_flight:
            log.warning("producer buffer not drained before commit: %d queued, %d in flight",
                        self.size, self.in_flight)  # fmt: skip


class Producer(AIOKafkaProducer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        threaded = self.buffer.__dict__.get("threaded_producer")
        self.buffer = TrackedBuffer(loop=self.loop, beacon=self.beacon)
        if threaded is not None:
            self.buffer.threaded_producer = threaded
        self.buffer.app = self.app


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
            did_commit = bool(await super().force_commit(topics, start_new_transaction))
            transactions: Any = self.transactions
            if self.in_transaction and start_new_transaction:
                await transactions.commit_written()
        return did_commit


class Transport(AIOKafkaTransport):  # type: ignore[misc]
    Consumer = Consumer
    Producer = Producer
    TransactionManager = InputPartitionTransactions


class App(faust.App):  # type: ignore[misc]
    """faust.App with the four exactly_once fixes above; agents use ``app.gate``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = EventGate()

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
