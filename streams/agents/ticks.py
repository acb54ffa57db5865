"""Timer: a tick into each claim-events partition this worker owns, so deadlines are checked,
and into each budget-requests partition, so claims held over budget are judged again.

The claim side checks deadlines while handling a tick, inside that partition's transaction,
because Faust tables can only change while an event is processed (and so the checks commit with
their effects). The tick's timestamp is the clock the deadlines are measured by.

Ticks go out through a plain (non-transactional) producer: a transactional send from a timer
would sit in a transaction Faust commits only once that partition has new offsets, and
read_committed readers would wait behind it.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaProducer

from erpbridge.kafka_security import client_options
from streams.app import app, codecs, settings

log = logging.getLogger(__name__)
_producer: list[AIOKafkaProducer] = []


async def _plain_producer() -> AIOKafkaProducer:
    if not _producer:
        producer = AIOKafkaProducer(**client_options(settings), acks="all")
        await producer.start()
        _producer.append(producer)
    return _producer[0]


@app.on_before_shutdown.connect
async def _stop_plain_producer(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """Flush and close the tick producer with the worker (it is not one of Faust's)."""
    while _producer:
        await _producer.pop().stop()


@app.timer(interval=settings.streams_tick_interval_s)
async def tick() -> None:
    """A tick into each claim-events partition (deadlines) and budget-requests partition (held
    claims judged again) this worker owns."""
    for role in ("claim_events", "budget_requests"):
        topic = codecs.topic(role)
        owned = sorted(tp.partition for tp in app.assignor.assigned_actives()
                       if tp.topic == topic)  # fmt: skip
        if not owned:
            continue
        producer = await _plain_producer()
        tick = codecs.serializer(role)({"kind": "TICK"})
        for partition in owned:
            await producer.send_and_wait(topic, tick, partition=partition)
