"""A partition group's transaction that can no longer commit stops the worker, which is then
started again and replays that group from its last commit.

Each input partition group has its own transactional producer (Faust's naming, one per
``transactional_id``). Its transaction can close behind the processors' back: a send that
failed (a timeout, ``NotEnoughReplicas`` after its retries, the broker aborting a transaction
past its timeout) leaves aiokafka's producer in ``ABORTABLE_ERROR``; a producer fenced by a
newer one is in ``FATAL_ERROR``; Faust's ``begin_transaction`` only logs a warning when it
fails, leaving the producer ``READY``. From then on every send of that group's events raised
``IllegalOperation: Can't send messages while not in transaction`` and every commit of its
offsets failed, so the agents restarted over and over and the group's partitions were never
processed again (measured in the Kubernetes play: two workers started together, about one play
in three). Skipping the group's commit instead (tried, then reverted) turned that into a silent
stall.

Kafka Streams closes such a task "dirty" and re-initialises it from its changelogs. Here the
worker does the equivalent with the one path already proven to lose and double nothing, a stop
followed by a restart (the SIGKILL and repeated-kill tests): the group's offsets and its table
writes are left uncommitted, the worker stops as on SIGTERM (committing its healthy groups) and
exits with status 1, and its supervisor (Kubernetes, compose's ``restart: unless-stopped``)
starts it again; the restarted worker aborts what the broken producer left open
(``init_transactions``) and reads the group again from its committed offsets.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from erpbridge import metrics

log = logging.getLogger(__name__)


def transaction_state(producer: Any, transactional_id: str) -> str | None:
    """``None`` while the transaction of ``transactional_id`` is open and takes sends; else
    what it is instead (aiokafka's state name, or ``no producer``)."""
    transactional = producer._transaction_producers.get(transactional_id)
    if transactional is None:
        return "no producer"
    manager = transactional._txn_manager
    return None if manager.is_in_transaction() else str(manager.state.name)


class BrokenTransactions:
    """The transactions found unable to commit; the first one stops the worker."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}  # transactional id -> why

    def report(self, transactional_id: str, why: str) -> None:
        if transactional_id in self.found:
            return
        self.found[transactional_id] = why
        metrics.STREAM_TRANSACTIONS_BROKEN.inc()
        log.error("transaction %s cannot commit (%s): its events are not committed; stopping "
                  "the worker, to be started again and replay them from the last commit",
                  transactional_id, why)  # fmt: skip
        if len(self.found) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the worker's own stop, as a deploy's

    def exit_reason(self) -> str | None:
        """Why the worker must exit with a failure status, if it must."""
        if not self.found:
            return None
        listed = "; ".join(f"{tid}: {why}" for tid, why in sorted(self.found.items()))
        return (f"stopped because transactions could not commit ({listed}); start the worker "
                "again: it replays their events from the last commit")  # fmt: skip
