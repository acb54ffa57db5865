"""Every worker's copy of the reference topic: read whole before the first event, then tailed.

Kafka Streams calls this a GlobalKTable. A Faust GlobalTable would do too, but its recovery
under exactly_once has been the least reliable part of Faust, and the processors only read
this data: one plain read_committed consumer without a group is enough.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from erpbridge.metrics import STREAM_TABLE_KEYS
from erpbridge.reference import BadReferenceEntry, ReferenceData

log = logging.getLogger(__name__)


class ReferenceView:
    def __init__(self, client_options: dict[str, Any], topic: str,
                 rate_max_age_days: int) -> None:  # fmt: skip
        """``client_options``: the aiokafka client's (bootstrap servers and security)."""
        self.data = ReferenceData(rate_max_age_days=rate_max_age_days)
        self._client_options, self._topic = client_options, topic
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        """Read whole up to the end it found first (what ``ready`` waits for)."""
        return self._ready.is_set()

    async def ready(self) -> ReferenceData:
        """The data, once the topic has been read up to its end as of the first call."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="reference-view")
        if not self._ready.is_set():
            waiter = asyncio.create_task(self._ready.wait())
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if not self._ready.is_set():
                waiter.cancel()
                self._task.result()  # raises what stopped the reader
        return self.data

    async def _run(self) -> None:
        # No group: every worker reads every partition from the beginning, and nothing commits.
        consumer = AIOKafkaConsumer(self._topic, **self._client_options,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed")  # fmt: skip
        await consumer.start()
        try:
            end: dict[TopicPartition, int] | None = None
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self._apply(record.key, record.value)
                if batches:
                    for kind, count in self.data.sizes().items():
                        STREAM_TABLE_KEYS.labels(f"reference.{kind}").set(count)
                if self._ready.is_set() or not consumer.assignment():
                    continue
                if end is None:  # where "read whole" ends: the first call's end offsets
                    end = await consumer.end_offsets(list(consumer.assignment()))
                positions = [await consumer.position(tp) for tp in end]
                if all(position >= end[tp] for position, tp in zip(positions, end, strict=True)):
                    self._ready.set()
                    log.info("reference data loaded: %s", self.data.sizes())
        finally:
            await consumer.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            self.data.apply((key or b"").decode(), value)
        except (BadReferenceEntry, ValueError) as exc:
            log.error("reference entry skipped key=%r: %s", key, exc)
