"""The stream processors' own runtime on librdkafka (confluent-kafka): one group consumer, one
producer and one asyncio loop per worker, under the same agents, tables and rules as the Faust
runtime (:mod:`streams.transactions`). Chosen with ``ERPBRIDGE_STREAMS_RUNTIME=direct``.

Why it exists: the bench measured about half of a Faust worker's CPU in Faust, aiokafka and
asyncio machinery, and a Quix Streams application running our rules 3-4 times faster than the
Faust worker (``bench/README.md``). This loop takes a batch from librdkafka, runs each event's
handler to completion (a send only queues the record in librdkafka: the handler never waits),
and commits every ``streams_commit_interval_s``.

Exactly once (``exactly_once``):

- One transactional producer per worker. Its id is kept in the worker's data folder, so a
  restarted worker's ``init_transactions`` aborts what its previous life left open; a worker
  gone for good leaves its open transaction to ``transaction.timeout.ms`` (10 s, Kafka
  Streams' choice), after which read_committed readers go on.
- The input offsets go into the transaction with the consumer's group metadata (KIP-447): a
  worker whose partitions were given to another in a rebalance is fenced at its next commit.
- Tables are in memory. Each change goes to the table's changelog in the transaction of the
  event that made it (the last value of each key per commit), with the outputs and offsets.
- A newly assigned partition is read back from its changelogs, read_committed, up to their end
  before any of its events is handled.
- The transaction commits every commit interval and before partitions are revoked. A commit that
  fails stops the worker with status 1: its restart reads the committed state back. Partitions
  lost without a revoke drop the work since the last commit (the transaction aborted, the tables
  forgotten) and the next assignment reads them back.

At least once: a plain idempotent producer; at each commit the changelog records and outputs are
flushed, then the offsets committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import inspect
import logging
import signal
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from erpbridge.config import Settings
from erpbridge.failures import RetriesExhausted, RetryableError, Stage
from erpbridge.failures.retry import Attempts, RetryPolicy, RetryWithTolerance
from erpbridge.kafka_security import librdkafka_options
from erpbridge.metrics import STREAM_COMMIT_SECONDS, STREAM_RESTORE_SECONDS, STREAM_RESTORED_RECORDS
from erpbridge.topics import table_changelog

log = logging.getLogger(__name__)
TRACE = logging.getLogger("erpbridge.trace")  # ERPBRIDGE_TRACE=1: see streams.transactions
TRANSACTION_TIMEOUT_MS = 10_000
BATCH = 500  # records taken from librdkafka at once
IDLE_S = 0.01  # with nothing to read, the loop looks again after this long
# a commit step that fails with an error librdkafka calls retriable (a coordinator moving while a
# broker is down) is asked again, by the one retry policy, for 30 s before the worker stops
COMMIT_RETRY = RetryWithTolerance("streams", Stage.COMMIT, RetryPolicy(initial_s=0.5, max_s=2.0),
                                  timeout_s=30.0)  # fmt: skip
# reading the tables back waits for the brokers longer: a worker that gives up restarts to wait
RESTORE_RETRY = RetryWithTolerance("streams", Stage.RESTORE, RetryPolicy(initial_s=0.2, max_s=5.0),
                                   timeout_s=180.0)  # fmt: skip
_NEVER = threading.Event()  # a commit is not interrupted: the loop stops between commits
Handler = Callable[["Event"], Awaitable[None]]
T = TypeVar("T")


class TP(NamedTuple):
    topic: str
    partition: int


class Record:
    """Where an event came from, as the agents read it (Faust's ``event.message``)."""

    __slots__ = ("topic", "partition", "offset", "timestamp")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: float) -> None:
        self.topic, self.partition, self.offset, self.timestamp = (topic, partition, offset,
                                                                   timestamp)  # fmt: skip

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class Event:
    __slots__ = ("key", "value", "headers", "message")

    def __init__(self, message: Message) -> None:
        topic, partition = message.topic(), message.partition()
        self.key: bytes | None = message.key()
        self.value: bytes | None = message.value()
        self.headers: dict[str, bytes] = dict(message.headers() or ())
        # seconds, as Faust gives them (the agents turn them back into milliseconds)
        self.message = Record(topic, partition, message.offset(), message.timestamp()[1] / 1000.0)


class Signal:
    """Receivers called as Faust calls a signal's: ``receiver(sender, *args, **kwargs)``."""

    def __init__(self) -> None:
        self._receivers: list[Callable[..., Any]] = []

    def connect(self, receiver: Callable[..., Any]) -> Callable[..., Any]:
        self._receivers.append(receiver)
        return receiver

    async def send(self, *args: Any, **kwargs: Any) -> None:
        for receiver in self._receivers:
            result = receiver(self, *args, **kwargs)
            if inspect.isawaitable(result):
                await result


class Gate:
    """Every handler runs whole between two commits here: nothing to hold."""

    def event(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class Stopped:
    """Why the worker stopped broken (status 1), if it did (the Faust runtime's
    :class:`streams.broken_transactions.BrokenTransactions` says the same)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def exit_reason(self) -> str | None:
        return self.reason


class DirectTopic:
    def __init__(self, app: DirectApp, names: tuple[str, ...],
                 serialize: Callable[[Any], bytes] | None) -> None:  # fmt: skip
        self.app, self.topics, self._serialize = app, names, serialize

    def get_topic_name(self) -> str:
        return self.topics[0]

    async def send(self, key: bytes | None = None, value: Any = None,
                   headers: Any = None, partition: int | None = None) -> None:  # fmt: skip
        raw = value if self._serialize is None or value is None else self._serialize(value)
        self.app.produce(self.topics[0], key, raw, headers, partition)


class DirectTable:
    """A table in memory: its values, and the keys of each input partition (written from that
    partition's events, read back from that partition of the changelog)."""

    def __init__(self, app: DirectApp, name: str) -> None:
        self.app, self.name = app, name
        self.changelog = table_changelog(app.app_id, name)
        self._values: dict[bytes, bytes] = {}
        self._keys: dict[int, set[bytes]] = {}

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self._values.get(key, default)

    def put_for(self, event: Event, key: bytes, value: bytes | None) -> None:
        """``table[key] = value`` (None deletes), its changelog record in the event's commit."""
        partition = event.message.partition
        self._set(partition, key, value)
        self.app.changelog_write(self, partition, key, value)

    def _set(self, partition: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._values.pop(key, None)
            self._keys.get(partition, set()).discard(key)
        else:
            self._values[key] = value
            self._keys.setdefault(partition, set()).add(key)

    def entries_of(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self._keys.get(partition, ())):
            value = self._values.get(key)
            if value is not None:
                yield key, value

    def sweep_of(self, partition: int, start: bytes | None,
                 limit: int) -> tuple[list[tuple[bytes, bytes]], bytes | None]:  # fmt: skip
        keys = sorted(self._keys.get(partition, ()))
        first = 0 if start is None else bisect_left(keys, start)
        chosen = keys[first : first + limit]
        following = keys[first + limit] if first + limit < len(keys) else None
        return [(key, self._values[key]) for key in chosen], following

    def key_count(self) -> int:
        return len(self._values)

    def drop(self, partition: int) -> None:
        for key in self._keys.pop(partition, ()):
            self._values.pop(key, None)

    def restore(self, partition: int, key: bytes, value: bytes | None) -> None:
        self._set(partition, key, value)


def _written_at(message: Message) -> int:
    return int(message.timestamp()[1])


def in_written_order(messages: list[Message]) -> Iterator[Message]:
    """A batch's records, each partition's in its order, the partitions interleaved by their
    records' timestamps (as Kafka Streams picks a task's next record): a claim returned in
    approval and then sent again is handled in that order, although the approval and the claim
    come from two topics. librdkafka hands over each partition's fetched records together."""
    by_partition: dict[tuple[str, int], list[Message]] = {}
    for message in messages:
        by_partition.setdefault((message.topic(), message.partition()), []).append(message)
    if len(by_partition) < 2:
        return iter(messages)
    return heapq.merge(*by_partition.values(), key=_written_at)


def _worker_id(folder: Path) -> str:
    """This worker's transactional id suffix: kept in its data folder so that a restart fences
    its previous life at once; a fresh one when another live worker holds that folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "direct-worker-id"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return uuid.uuid4().hex
    handle.seek(0)
    found = handle.read().strip()
    if not found:
        found = uuid.uuid4().hex
        handle.seek(0)
        handle.truncate()
        handle.write(found)
        handle.flush()
    _HELD.append(handle)  # the lock lasts as long as the process
    return found


_HELD: list[Any] = []


class DirectApp:
    """What the agents use of a Faust app (topics, tables, agents, tasks, timers, signals, the
    assignment), on one librdkafka consumer and producer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app_id = settings.streams_app_id
        self.exactly_once = settings.streams_processing_guarantee == "exactly_once"
        self.gate = Gate()
        self.broken = Stopped()
        self.assignor = self  # assigned_actives(), as Faust's assignor has it
        self.on_partitions_assigned = Signal()
        self.on_partitions_revoked = Signal()
        self.on_before_shutdown = Signal()
        self.started = False
        self.restoring = False
        self.rebalancing = False
        self._handlers: dict[str, Handler] = {}
        self._tables: list[DirectTable] = []
        self._tasks: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._timers: list[tuple[float, Callable[[], Awaitable[None]]]] = []
        self._assigned: set[TP] = set()
        self._held: set[int] = set()  # table partitions in memory
        self._offsets: dict[TP, int] = {}  # handled, not yet committed: the next offset
        self._changelog: dict[tuple[DirectTable, int], dict[bytes, bytes | None]] = {}
        self._signals: list[Awaitable[None]] = []  # from a rebalance, sent before the next event
        self._stop = False
        self._delivery_error: KafkaError | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    # what the agents and app module declare ---------------------------------------------------
    def topic(self, *names: str, value_serializer: Any = "raw", **_: Any) -> DirectTopic:
        serialize = None if value_serializer == "raw" else value_serializer.dumps
        return DirectTopic(self, names, serialize)

    def Table(self, name: str, **_: Any) -> DirectTable:  # noqa: N802 (Faust's spelling)
        table = DirectTable(self, name)
        self._tables.append(table)
        return table

    def handle(self, channel: DirectTopic, one: Handler, name: str) -> None:
        for topic in channel.topics:
            self._handlers[topic] = one

    def task(
        self, fn: Callable[[], Coroutine[Any, Any, None]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        self._tasks.append(fn)
        return fn

    def timer(self, interval: float) -> Callable[[Callable[[], Awaitable[None]]], Any]:
        def register(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            self._timers.append((interval, fn))
            return fn

        return register

    def assigned_actives(self) -> set[TP]:
        return set(self._assigned)

    def not_ready(self) -> str | None:
        if not self.started:
            return "starting"
        if self.restoring:
            return "restoring its tables from their changelogs"
        if self.rebalancing:
            return "rebalancing"
        return None

    # sending ----------------------------------------------------------------------------------
    def produce(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None,
                partition: int | None = None) -> None:  # fmt: skip
        assert self._producer is not None
        args: dict[str, Any] = {"key": key, "value": value}
        if headers:
            args["headers"] = list(headers.items()) if isinstance(headers, dict) else headers
        if partition is not None:
            args["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **args)
                return
            except BufferError:  # librdkafka's queue is full: let it send
                self._producer.poll(0.05)
            except KafkaException as exc:  # fenced, or a fatal error: the transaction is lost
                raise _Broken(f"cannot commit: the producer failed: {exc.args[0]}") from exc

    def changelog_write(self, table: DirectTable, partition: int, key: bytes,
                        value: bytes | None) -> None:  # fmt: skip
        self._changelog.setdefault((table, partition), {})[key] = value

    # running ----------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM or SIGINT (status 0), or until a commit fails (status 1)."""
        try:
            asyncio.run(self._main())
        except (_Broken, RetriesExhausted) as exc:  # RetriesExhausted: brokers away too long
            self.broken.reason = str(exc)
            log.error("stream worker stopped: %s", exc)
            return 1
        return 0

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._ask_stop)
        self._create_changelogs()
        self._producer = self._new_producer()
        self._consumer = self._new_consumer()
        background = [asyncio.create_task(fn(), name=fn.__name__) for fn in self._tasks]
        background += [asyncio.create_task(self._every(interval, fn), name=fn.__name__)
                       for interval, fn in self._timers]  # fmt: skip
        self._consumer.subscribe(sorted(self._handlers), on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)  # fmt: skip
        self.started = True
        try:
            await self._loop()
            self._commit()
        finally:
            for task in background:
                task.cancel()
            await self.on_before_shutdown.send(signal=None)
            self._close()

    def _ask_stop(self) -> None:
        log.info("stream worker stopping: committing and leaving the group")
        self._stop = True

    async def _loop(self) -> None:
        assert self._consumer is not None and self._producer is not None
        interval = self.settings.streams_commit_interval_s
        last_commit = time.monotonic()
        handled = False
        while not self._stop:
            messages = self._consumer.consume(BATCH, timeout=0)
            if self._signals:  # a rebalance happened inside consume(): its partitions only
                messages = [m for m in messages if (m.topic(), m.partition()) in self._assigned]
            while self._signals:
                await self._signals.pop(0)
            for message in in_written_order(messages):
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise _Broken(f"consumer: {error}")
                    log.warning("consumer: %s", error)
                    continue
                event = Event(message)
                await self._handlers[event.message.topic](event)
                self._offsets[event.message.tp] = event.message.offset + 1
                handled = True
            self._producer.poll(0)
            if self._delivery_error is not None:
                raise _Broken(f"a record was not delivered: {self._delivery_error}")
            if handled and time.monotonic() - last_commit >= interval:
                self._commit()
                last_commit, handled = time.monotonic(), False
            # the other tasks (reference data, ticks) run here; idle, it looks again in 10 ms
            await asyncio.sleep(0 if messages else IDLE_S)

    async def _every(self, interval: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._assigned:
                await fn()

    def _commit(self) -> None:
        """The changelog records, then the offsets: into the transaction, which commits (exactly
        once), or flushed, then committed (at least once)."""
        assert self._consumer is not None and self._producer is not None
        if not self._offsets and not self._changelog:
            return
        started = time.perf_counter()
        for (table, partition), writes in self._changelog.items():
            for key, value in writes.items():
                self.produce(table.changelog, key, value, None, partition)
        self._changelog.clear()
        offsets = [TopicPartition(tp.topic, tp.partition, offset)
                   for tp, offset in self._offsets.items()]  # fmt: skip
        producer, consumer = self._producer, self._consumer
        try:
            if self.exactly_once:
                if offsets:
                    _retrying(lambda: producer.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), 30))  # fmt: skip
                _retrying(lambda: producer.commit_transaction(30))
                self._producer.begin_transaction()
            else:
                left = self._producer.flush(30)
                if left or self._delivery_error is not None:
                    raise _Broken(f"{left} records not delivered ({self._delivery_error})")
                if offsets:
                    _retrying(lambda: consumer.commit(offsets=offsets, asynchronous=False))
        except KafkaException as exc:
            raise _Broken(f"cannot commit: {exc.args[0]}") from exc
        except RetriesExhausted as exc:
            raise _Broken(f"cannot commit: {exc}") from exc
        if TRACE.isEnabledFor(logging.INFO):
            TRACE.info(
                "commit offsets %s",
                sorted((tp.topic, tp.partition, offset) for tp, offset in self._offsets.items()),
            )
        self._offsets.clear()
        STREAM_COMMIT_SECONDS.observe(time.perf_counter() - started)

    # rebalances (called by librdkafka inside consume()) ----------------------------------------
    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalancing = True
        self._commit()  # what was handled commits while this worker still owns it
        revoked = {TP(p.topic, p.partition) for p in partitions}
        self._assigned -= revoked
        self._signals.append(self.on_partitions_revoked.send(revoked))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revoke (this worker missed its session, say while a
        broker was down): what it handled since its last commit may be another worker's now.
        Like Kafka Streams, it drops that work (the open transaction aborted, the tables
        forgotten) and rejoins; the next assignment reads the committed state back."""
        lost = {TP(p.topic, p.partition) for p in partitions}
        log.warning("partitions lost (the session ended without a revoke): %s; the work since "
                    "the last commit is dropped and read again", sorted(lost))  # fmt: skip
        self.rebalancing = True
        if self.exactly_once and self._producer is not None:
            try:
                self._producer.abort_transaction(30)
                self._producer.begin_transaction()
            except KafkaException as exc:
                if not _fenced(exc):
                    raise _Broken(f"cannot commit: the abort after lost partitions failed: "
                                  f"{exc.args[0]}") from exc  # fmt: skip
                # The coordinator aborted the transaction itself: it outlived its timeout while
                # the brokers were away, and the producer's epoch moved on. What it held is
                # dropped here anyway; a new producer takes the id up (no other live worker has
                # it: the data folder's lock), and the next assignment reads the state back.
                log.warning("the transaction was aborted by its coordinator (%s); a new producer "
                            "takes over", exc.args[0])  # fmt: skip
                self._producer = self._new_producer()
        self._offsets.clear()
        self._changelog.clear()
        for number in self._held:
            for table in self._tables:
                table.drop(number)
        self._held, self._assigned = set(), set()
        self._signals.append(self.on_partitions_revoked.send(lost))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = {TP(p.topic, p.partition) for p in partitions}
        numbers = {tp.partition for tp in self._assigned}
        for number in self._held - numbers:
            for table in self._tables:
                table.drop(number)
        new = numbers - self._held
        self._held = numbers
        if new:
            self.restoring = True
            try:
                self._restore(sorted(new))
            finally:
                self.restoring = False
        self.rebalancing = False
        self._signals.append(self.on_partitions_assigned.send(set(self._assigned)))
        log.info("stream worker ready: partitions %s, their tables restored", sorted(numbers))

    def _restore(self, numbers: list[int]) -> None:
        """Read the tables' changelog partitions ``numbers`` back, read_committed, to the end."""
        started = time.monotonic()
        reader = Consumer({**librdkafka_options(self.settings),
                           "group.id": f"{self.app_id}-restore", "enable.auto.commit": False,
                           "isolation.level": "read_committed",
                           "auto.offset.reset": "earliest"})  # fmt: skip
        try:
            ends: dict[TP, int] = {}
            for table in self._tables:
                for number in numbers:
                    tp = TopicPartition(table.changelog, number)
                    try:
                        low, high = _watermarks(reader, tp)
                    except (KafkaException, RetriesExhausted) as exc:
                        raise _Broken(f"cannot read the tables back: {exc}") from exc
                    if high > low:
                        ends[TP(table.changelog, number)] = high
            reading = time.monotonic()
            by_name = {table.changelog: table for table in self._tables}
            reader.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
                           for tp in ends])  # fmt: skip
            count = 0
            while ends:
                if time.monotonic() - reading > 3 * TRANSACTION_TIMEOUT_MS / 1000 + 60:
                    raise _Broken(f"the changelogs {sorted(ends)} did not reach their end")
                for message in reader.consume(BATCH, timeout=0.2):
                    if message.error() is None:
                        by_name[message.topic()].restore(message.partition(), message.key(),
                                                         message.value())  # fmt: skip
                        count += 1
                done = [tp for tp, position in zip(ends, reader.position(
                    [TopicPartition(tp.topic, tp.partition) for tp in ends]), strict=True)
                    if position.offset >= ends[tp]]  # fmt: skip
                for tp in done:
                    del ends[tp]
            seconds = time.monotonic() - started
            STREAM_RESTORE_SECONDS.observe(seconds)
            STREAM_RESTORED_RECORDS.inc(count)
            log.info("restored %d changelog records of partitions %s in %.1f s", count, numbers,
                     seconds)  # fmt: skip
        finally:
            reader.close()

    # clients ----------------------------------------------------------------------------------
    def _new_producer(self) -> Producer:
        settings = self.settings
        config: dict[str, Any] = {
            **librdkafka_options(settings),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": settings.streams_producer_linger_ms,
            "batch.size": settings.streams_producer_batch_bytes,
            "partitioner": "murmur2_random",  # as the Java, kafka-python and aiokafka clients
        }
        if self.exactly_once:
            folder = Path(settings.streams_datadir) / self.app_id
            config["transactional.id"] = f"{self.app_id}-{_worker_id(folder)}"
            config["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
        else:
            config["on_delivery"] = self._on_delivery
            config["delivery.report.only.error"] = True
        producer = Producer(config)
        if self.exactly_once:
            # aborts what this worker's last life left open
            _retrying(lambda: producer.init_transactions(60), RESTORE_RETRY, _BROKERS_AWAY,
                      "the producer's transactions")  # fmt: skip
            producer.begin_transaction()
        return producer

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._delivery_error = error

    def _new_consumer(self) -> Consumer:
        settings = self.settings
        return Consumer({
            **librdkafka_options(settings),
            "group.id": self.app_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "range",  # partition p of every input together
            "session.timeout.ms": int(settings.streams_session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.streams_heartbeat_interval_s * 1000),
            "max.partition.fetch.bytes": settings.streams_fetch_partition_bytes,
        })  # fmt: skip

    def _create_changelogs(self) -> None:
        """The tables' changelogs, compacted, as Faust makes them (when they are missing)."""
        settings = self.settings
        admin = AdminClient(librdkafka_options(settings))
        listed = _retrying(lambda: admin.list_topics(timeout=30), RESTORE_RETRY, _BROKERS_AWAY,
                           "the topics")  # fmt: skip
        present = set(listed.topics)
        missing = [NewTopic(table.changelog, settings.topic_partitions,
                            settings.topic_replication_factor,
                            config={"cleanup.policy": "compact"})
                   for table in self._tables if table.changelog not in present]  # fmt: skip
        for future in admin.create_topics(missing).values() if missing else ():
            try:
                future.result(30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()  # leaves the group: the others rebalance at once
        for unsent in self._signals:  # the revoke of the close: no receiver needs it now
            unsent.close()  # type: ignore[attr-defined]
        if self._producer is not None:
            self._producer.flush(10)


# a changelog created a moment ago answers these until its leader is known; every broker away
# (restarting, or a name that does not resolve for a while: podman's DNS under load) answers the
# others: both are waited out
_NO_LEADER_YET = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART)  # fmt: skip
_BROKERS_AWAY = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                 KafkaError._RESOLVE)  # fmt: skip


def _watermarks(reader: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """A partition's first and end offsets, waiting (``RESTORE_RETRY``) while its leader is not
    known yet or no broker answers."""
    what = f"the end of {tp.topic}[{tp.partition}]"
    low, high = _retrying(lambda: reader.get_watermark_offsets(tp, timeout=30), RESTORE_RETRY,
                          _NO_LEADER_YET + _BROKERS_AWAY, what)  # fmt: skip
    return int(low), int(high)


def _fenced(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    fenced = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
    return isinstance(error, KafkaError) and error.code() in fenced


class _Broken(Exception):
    """A commit failed, or partitions were lost: stop with status 1."""


class _Retriable(RetryableError):
    """A librdkafka error it calls retriable, for the retry policy to ask again."""


def _retrying(step: Callable[[], T], retry: RetryWithTolerance = COMMIT_RETRY,
              waited: tuple[int, ...] = (), what: str = "commit") -> T:  # fmt: skip
    """A step against the brokers, asked again while it fails with an error librdkafka calls
    retriable, or one of ``waited`` (its documented handling: retriable, retry; abortable or
    fatal, give up). An error it does not retry propagates as it came; one retried past
    ``retry``'s time as RetriesExhausted."""

    def attempt() -> T:
        try:
            return step()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and (error.retriable() or error.code() in waited):
                raise _Retriable(str(error)) from exc
            raise

    def said(attempts: Attempts, wait: float) -> None:
        log.warning("%s: %s; asking again in %.1f s", what, attempts.error, wait)

    return retry.call(attempt, _NEVER, said)
