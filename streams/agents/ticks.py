"""Timer: a tick into each claim-events partition this worker owns, so deadlines are checked.

The claim side checks deadlines while handling a tick, inside that partition's transaction,
because Faust tables can only change while an event is processed (and so the checks commit with
their effects). The tick's timestamp is the clock the deadlines are measured by.
"""

from __future__ import annotations

import json
import logging

from streams.app import app, claim_events, codecs, settings

log = logging.getLogger(__name__)
TICK = json.dumps({"kind": "tick"}).encode()
CLAIM_EVENTS = codecs.topic("claim_events")


@app.timer(interval=settings.streams_tick_interval_s)
async def tick() -> None:
    owned = sorted(tp.partition for tp in app.assignor.assigned_actives()
                   if tp.topic == CLAIM_EVENTS)  # fmt: skip
    for partition in owned:
        try:
            await claim_events.send(key=None, value=TICK, partition=partition)
        except Exception as exc:  # noqa: BLE001  a rebalance took the partition: the next tick
            log.warning("tick to partition %d not sent: %r", partition, exc)
