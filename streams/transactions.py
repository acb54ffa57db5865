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
   :mod:`streams.table_writes` instead, whose changelog records a commit sends into the very
   transactions it commits, before their offsets (:meth:`Consumer._commit_offsets`).

3. Faust commits from a timer task, concurrently with the agents, so a transaction could close
   in the middle of an event: its table write committed, its output (a moment later) in the
   next transaction. Killed before that one committed, the event was replayed against a table
   that already held its effect, judged a duplicate, and its output was never sent. Here agents
   process each event inside :class:`EventGate`, and a commit waits for the events in progress
   and holds new ones back, so a transaction holds whole events only (Kafka Streams commits
   between records for the same reason). The event is acked as the agent asks for the next
   one, before any other task runs, so its offset is in that commit.

4. Faust skips records it considers stale and still commits past them (see :meth:`Consumer.ack`
   and :meth:`Consumer._wait_next_records`): after a restart, a few inputs were never processed.

5. Faust's flow control clears every agent's queue whenever it resumes, even when it was never
   suspended, and its recovery resumes it right after seeking to the committed offsets: events
   already queued were discarded while the read offsets had moved past them, so their re-fetch
   was dropped as already read. This was the last cause of claims lost after a SIGKILL (see
   :class:`FlowControl`). Under all of these, :class:`streams.delivery_ledger.DeliveryLedger`
   records which fetched records reached the agents: a commit never passes one that did not,
   and one dropped on the way is read again.

Upstream reports of the same families of fault (none of them fixes ours in 0.15.3):
faust-streaming/faust#323 (duplicates with exactly_once around a rebalance: repairs 1 and 3),
robinhood/faust#115 ("DROPPED MESSAGE ROFF": a fetched record dropped and committed past:
repair 4 and the delivery ledger), faust-streaming/faust#236 (the flow control clearing every
queue: repair 5), faust-streaming/faust#221 with PR #223 and PR #217 (records fetched before a
rebalance's seek: repair 5). For repair 2 and the shutdown commit below we found no upstream
report. :mod:`streams.framework` pins the versions and checks at start-up that every private
member these repairs use is still there.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import faust
from faust.streams import current_event
from faust.transport.consumer import TransactionManager, ack_lock
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from mode.utils.futures import notify
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from streams.broken_transactions import BrokenTransactions, transaction_state
from streams.delivery_ledger import DeliveryLedger
from streams.disk_state import Group, flush_committed, transaction_of
from streams.recovery import ConsumerThread
from streams.table_writes import PendingChangelog

log = logging.getLogger(__name__)
TRACE = logging.getLogger("erpbridge.trace")
TRACE.setLevel(logging.INFO if os.environ.get("ERPBRIDGE_TRACE") else logging.WARNING)


def _short(tp: Any) -> str:
    """A topic's name without the app's prefix, for traces."""
    return str(tp.topic.split(".", 1)[-1])


def transactional_id(app: Any, group: Group) -> str:
    """The transactional id of an input transaction (Faust's naming)."""
    return f"{app.conf.id}-{group[0]}-{group[1]}"


class InputPartitionTransactions(TransactionManager):  # type: ignore[misc]
    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any, *,
                   transactional_id: str | None = None) -> Any:  # fmt: skip
        event = current_event()
        if event is None:
            return await super().send(topic, key, value, partition, timestamp, headers,
                                      transactional_id=transactional_id)  # fmt: skip
        tid = self._tid(event.message.tp)
        try:
            return await self.producer.send(topic, key, value, partition, timestamp, headers,
                                            transactional_id=tid)  # fmt: skip
        except Exception as exc:
            app: Any = self.app
            state = transaction_state(self.producer, tid)
            if state is not None and event.message.tp in app.consumer.assignment():
                app.broken.report(tid, f"{state}; a send raised {exc!r}")
            raise  # a revoked partition's producer is gone: its next owner replays the event

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        """Every assigned partition group's transaction starts on a new producer. Faust keeps the
        producers of groups it still holds and only begins a transaction on them; when a
        rebalance came without the revocation's final commit (measured: "Heartbeat failed:
        local member_id was not recognized", then "Exception in begin_transaction ... Invalid
        state transition IN_TRANSACTION -> IN_TRANSACTION"), such a producer kept its open
        transaction with the outputs of events whose offsets were dropped and are read again
        (posted twice once committed), or it had been fenced meanwhile by the worker that held
        the group in between, and every send of the group failed from then on. A new producer's
        init_transactions aborts what the old one left open and fences it (Kafka Streams starts
        a task's producer the same way)."""
        producer: Any = self.producer
        for tid in sorted(producer._transaction_producers):
            await producer.stop_transaction(tid)
        await super().on_rebalance(assigned, revoked, newly_assigned)
        app: Any = self.app
        for tid in sorted(self._tps_to_transactional_ids(assigned)):
            state = transaction_state(producer, tid)
            if state is not None:  # begin_transaction only warns when it fails
                app.broken.report(tid, f"{state} after the rebalance started it")

    def _tid(self, tp: Any) -> str:
        """The transactional id Faust commits ``tp``'s offsets in."""
        return transactional_id(self.app, transaction_of(self.app, tp))

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """Faust's commit, except that a fenced producer's ``ProducerFenced`` is raised to the
        consumer's commit (which reports the group's transaction broken and stops the worker,
        saying which and why) instead of crashing the app with only aiokafka's message."""
        if TRACE.isEnabledFor(logging.INFO):
            TRACE.info("commit offsets %s", sorted((_short(tp), tp.partition, o)
                                                   for tp, o in offsets.items()))  # fmt: skip
        by_transactional_id: dict[str, dict[Any, int]] = {}
        for tp, offset in offsets.items():
            by_transactional_id.setdefault(self._tid(tp), {})[tp] = offset
        if by_transactional_id:
            await self.producer.commit_transactions(
                by_transactional_id, self.app.conf.id, start_new_transaction=start_new_transaction
            )
        return True


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
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger: DeliveryLedger[Any] = DeliveryLedger()
        handed_to_agents = self.callback

        async def callback(message: Any) -> None:
            # Marked before: an agent may take (and ack) the event while the hand-off awaits.
            self.ledger.delivered(message.tp, message.offset)
            try:
                await handed_to_agents(message)
            except BaseException:
                self.ledger.returned(message.tp, message.offset)
                raise

        self.callback = callback

    def _new_consumer_thread(self) -> ConsumerThread:
        """Highwaters from the broker (see :mod:`streams.recovery`)."""
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        """Faust's ``getmany`` silently drops fetched records of partitions that are not active
        at that moment, while the fetch position has moved past them (measured: a restarted
        worker's first fetch lost the first record of a partition, its offset committed
        later, the claim never posted). Here such records are not handed on; their partition
        is rewound to the first of them, to be fetched again once active."""
        records, active = await super()._wait_next_records(timeout)
        if records and TRACE.isEnabledFor(logging.INFO):
            TRACE.info("fetched %s flow=%s", sorted(
                (_short(tp), tp.partition, batch[0].offset, len(batch),
                 active is None or tp in active) for tp, batch in records.items() if batch),
                self.flow_active)  # fmt: skip
        if not records or active is None:
            return records, active
        buffered = self._buffered_partitions
        idle = {tp: batch for tp, batch in records.items()
                if batch and tp not in active and tp not in buffered}  # fmt: skip
        for tp, batch in idle.items():
            log.info("rewinding %s[%d] to %d: fetched while not active", tp.topic, tp.partition,
                     batch[0].offset)  # fmt: skip
            await self.seek(tp, batch[0].offset)
        records = {tp: batch for tp, batch in records.items() if tp not in idle}
        acks_enabled_for = self.app.topics.acks_enabled_for
        for tp, batch in records.items():
            if batch and acks_enabled_for(tp.topic):
                read = self._read_offset.get(tp)  # the drain loop drops what is before it
                fresh = [r.offset for r in batch if read is None or r.offset >= read]
                self.ledger.fetched(tp, fresh)
        return records, active

    _seek_epoch = 0

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        """Faust's recovery resumes the stream partitions *before* it seeks them to the committed
        offsets (upstream: faust-streaming/faust#216, closed for the table-less path only), so a
        batch fetched in between was still being handed out after the seek: its
        first record got lost in the switch, the rest advanced the read offsets, and the
        re-fetch after the seek was dropped as already read (measured: claim-events p0
        committed at 155, records 159.. of the old batch processed, 158 never). Here a batch
        stops being handed out once a seek happened; the next fetch starts where the seek put
        the partitions."""
        await self._reread_dropped()
        epoch = self._seek_epoch
        async for tp, message in super().getmany(timeout):
            if self._seek_epoch != epoch:
                log.info("dropping the rest of a batch fetched before a seek")
                break
            if self._trace_left > 0 and TRACE.isEnabledFor(logging.INFO):
                self._trace_left -= 1
                TRACE.info("yield %s[%d]@%d read=%s", _short(tp), tp.partition,
                           message.offset, self._read_offset.get(tp))  # fmt: skip
            yield tp, message

    _trace_left = 0

    async def _reread_dropped(self) -> None:
        """Between batches: a record fetched but never handed to the agents (or discarded from
        their queue) was dropped on the way (see :mod:`streams.delivery_ledger`). If the
        consumer would not hand it on again (its position, or the read offset that filters
        re-fetched records, is past it), read its partition again from it."""
        dropped = self.ledger.dropped()
        if not dropped:
            return  # the usual case: nothing to look up
        assigned = self.assignment()
        for tp, offset in dropped.items():
            if tp not in assigned:
                self.ledger.forget(tp)  # revoked meanwhile: its next owner reads it
                continue
            position = await self.position(tp)
            read = self._read_offset.get(tp)
            if (position is None or position <= offset) and (read is None or read <= offset):
                continue  # it comes again with the next fetch
            target = offset if position is None else min(offset, position)
            log.warning("%s[%d]@%d was fetched but never reached the agents: reading again "
                        "from %d", tp.topic, tp.partition, offset, target)  # fmt: skip
            self.ledger.forget(tp, target)
            await self.seek(tp, target)

    def _new_offset(self, tp: Any) -> int | None:
        """Faust's next offset to commit, unless it passes a record not yet handed to the agents
        (its gap bookkeeping can): then nothing is committed for the partition this time."""
        limit = self.ledger.first_pending(tp)
        if limit is None:
            return cast(int | None, super()._new_offset(tp))
        saved = (list(self._acked[tp]), self._gap[tp].copy(), set(self._acked_index[tp]))
        offset = super()._new_offset(tp)
        if offset is not None and offset > limit:
            self._acked[tp], self._gap[tp], self._acked_index[tp] = saved
            TRACE.info("not committing %s[%d] at %d: %d is not handed on yet", tp.topic,
                       tp.partition, offset, limit)  # fmt: skip
            return None
        return cast(int | None, offset)

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.ledger.forget(tp)
        changelog = cast(Any, self.app).changelog
        groups = {transaction_of(self.app, tp) for tp in revoked}
        changelog.forget(groups)  # their offsets are not committed: the next owner replays them
        await super().on_partitions_revoked(revoked)
        changelog.forget(groups)  # and what events in progress wrote meanwhile

    async def perform_seek(self) -> None:
        self._seek_epoch += 1
        self._trace_left = 400
        TRACE.info("seek starts, epoch %d", self._seek_epoch)
        self.ledger.forget_all()  # every partition is read again from its committed offset
        await super().perform_seek()
        self.ledger.forget_all()
        if TRACE.isEnabledFor(logging.INFO):
            TRACE.info("seek to committed %s", sorted(
                (_short(tp), tp.partition, offset)
                for tp, offset in self._read_offset.items()))  # fmt: skip

    def ack(self, message: Any) -> bool:
        """Faust's stream skips messages fetched before a rebalance, or delivered while flow is
        stopped (recovery), and *acks* them, so their offsets get committed although no agent
        saw them (measured: after a restart the first records past the committed offsets were
        skipped this way, and their claims never posted). They are fetched again after the seek
        to the committed offsets, so here their ack does not count their offset as done."""
        app = self.app
        stale = (not app.flow_control.is_active()
                 or message.generation_id != app.consumer_generation_id)  # fmt: skip
        if not stale:
            return bool(super().ack(message))
        with ack_lock:
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                notify(self._waiting_for_ack)
                log.info("not counting skipped %s[%d]@%d as done", message.topic,
                         message.partition, message.offset)  # fmt: skip
        return False

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """The table writes of the committing transactions send their changelog records into
        them (:mod:`streams.table_writes`); once offsets are committed, the on-disk tables take
        those writes."""
        app: Any = self.app
        assignment = self.assignment()
        committing = [tp for tp in offsets if tp in assignment]  # Faust drops the others
        if self.in_transaction:
            offsets = self._open_transactions_only(committing, offsets, start_new_transaction)
            committing = [tp for tp in committing if tp in offsets]
        if not committing:
            return False
        try:
            # A group's transaction can close while another group's changelog records are sent
            # (a send then raises IllegalOperation): these sends fail the way the commit does,
            # reported, instead of crashing the worker without saying why.
            await app.changelog.send({transaction_of(app, tp) for tp in committing},
                                     self._send_changelog)  # fmt: skip
            committed = bool(await super()._commit_offsets(offsets, start_new_transaction))
        except Exception as exc:
            if not self.in_transaction:
                raise
            if self._expected_closed():  # closed meanwhile: read again later
                log.info("not committing %s while stopping: %r", sorted(committing), exc)
                return False
            closed = self._closed(committing)
            if not closed:
                raise
            self._report(closed, f"{exc!r}")
            return False  # the worker stops; these groups replay from their last commit
        if committed:
            await flush_committed(app, committing)
        return committed

    def _open_transactions_only(self, assigned: Any, offsets: Any,
                                start_new_transaction: bool) -> Any:  # fmt: skip
        """The offsets of ``assigned`` partitions whose transaction is open. Once the stopping
        worker's commit ended every transaction, Faust commits again (its last commit, and its
        commit timer until the consumer stops); aiokafka refuses offsets outside a transaction
        (IllegalOperation), the consumer crashed and the worker exited with status 1, or its
        thread kept it alive (measured: a worker that did not exit within 60 s of SIGTERM):
        what a partition processed since is read again after a restart. Otherwise (neither
        stopping nor rebalancing) a commit finding a transaction closed reports it broken
        (:mod:`streams.broken_transactions`) and leaves its offsets and table writes out."""
        closed = self._closed(assigned)
        if start_new_transaction and not self._expected_closed():
            self._report(closed, "found at a commit")
        return {tp: offset for tp, offset in offsets.items()
                if tp in assigned and self._tid(tp) not in closed}  # fmt: skip

    def _expected_closed(self) -> bool:
        """Transactions close on purpose while the worker stops (its last commit ends them) and
        while it rebalances (they end at the revocation and start again on new producers)."""
        app: Any = self.app
        return bool(app.should_stop or app.rebalancing)

    def _tid(self, tp: Any) -> str:
        return transactional_id(self.app, transaction_of(self.app, tp))

    def _closed(self, tps: Any) -> dict[str, str]:
        """The transactions of ``tps`` that are not open (each group's once), and what they are
        instead."""
        producer = self.app.producer
        states = {tid: transaction_state(producer, tid) for tid in {self._tid(tp) for tp in tps}}
        return {tid: state for tid, state in states.items() if state is not None}

    def _report(self, closed: dict[str, str], why: str) -> None:
        app: Any = self.app
        for tid, state in sorted(closed.items()):
            app.broken.report(tid, f"{state}; {why}")

    async def _send_changelog(self, group: Group, topic: str, key: bytes, value: bytes | None,
                              partition: int) -> Awaitable[Any]:  # fmt: skip
        producer = self.app.producer
        if self.in_transaction:
            tid = transactional_id(self.app, group)
            return await producer.send(topic, key, value, partition, None, None,
                                       transactional_id=tid)  # fmt: skip
        return await producer.send(topic, key, value, partition, None, None)

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        app: Any = self.app
        async with app.gate.exclusive():
            return bool(await super().force_commit(topics, start_new_transaction))


class FlowControl(FlowControlEvent):  # type: ignore[misc]
    """Faust's flow control clears every stream queue when it resumes, even when it was never
    suspended, and Faust's recovery resumes it after seeking to the committed offsets: events
    fetched before the seek and queued for an agent are discarded, while the consumer's read
    offsets have moved past them, so when they are fetched again they are dropped as already
    read (measured: claim-events p2@206, handed to the claims agent's queue a moment before
    the resume, never processed; its claim never posted). Here a resume clears the queues only
    after a suspend, and whatever a clear discards is reported (``on_discard``), so that the
    consumer reads it again."""

    on_discard: Callable[[Any], None] | None = None

    def resume(self) -> None:
        if not self.is_active():
            super().resume()  # suspended: resume and clear, as Faust expects after a rebalance

    def clear(self) -> None:
        for queue in list(self._queues):
            for event in list(getattr(queue, "_queue", ())):
                message = getattr(event, "message", None)
                if message is not None and self.on_discard is not None:
                    self.on_discard(message)
        super().clear()


class Transport(AIOKafkaTransport):  # type: ignore[misc]
    Consumer = Consumer
    TransactionManager = InputPartitionTransactions


class App(faust.App):  # type: ignore[misc]
    """faust.App with the exactly_once repairs above; agents use ``app.gate``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = EventGate()
        self.changelog = PendingChangelog()
        self.broken = BrokenTransactions()

    @cached_property
    def flow_control(self) -> FlowControl:
        flow_control = FlowControl(loop=self.loop)
        flow_control.on_discard = self._discarded
        return flow_control

    def _discarded(self, message: Any) -> None:
        """An agent's event was discarded from its queue before the agent took it: the
        consumer reads it again (table changelog records are not: recovery rereads them)."""
        if self.topics.acks_enabled_for(message.topic):
            cast(Any, self.consumer).ledger.returned(message.tp, message.offset)

    def handle(self, channel: Any, one: Callable[[Any], Awaitable[None]], name: str) -> None:
        """An agent named ``name`` that awaits ``one(event)`` for each event of ``channel``
        (the runtime-neutral form :func:`streams.agents.outputs.serve` declares)."""

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await one(event)

        self.agent(channel, name=name)(agent)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
