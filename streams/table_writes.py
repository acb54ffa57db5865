"""Table writes that commit with the event that caused them.

A Faust table assignment (``table[key] = value``) queues its changelog record in the producer
buffer, which a background task sends later, possibly into the *next* transaction, after the
commit of the event's offsets (see :mod:`streams.transactions`). Here the store is updated and
the changelog record is sent from the agent, awaited, inside the event: it joins the input
partition's transaction with the event's outputs and offsets, so all of them commit, or none.
An on-disk store (:mod:`streams.disk_state`) writes the value to disk once that transaction
committed.
"""

from __future__ import annotations

from typing import Any


async def put(table: Any, event: Any, key: bytes, value: Any | None) -> None:
    """Set ``table[key] = value`` (``None`` deletes it) and log it in the event's transaction."""
    if value is None:
        table.data.pop(key, None)
    else:
        table.data[key] = value
    sent = await table.changelog_topic.send(key=key, value=value, partition=event.message.partition)
    note_sent = getattr(table.data, "note_sent", None)  # an on-disk store keeps its offset
    if note_sent is not None:
        note_sent(event, sent)
