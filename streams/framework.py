"""What the exactly-once repairs rely on inside faust-streaming, aiokafka and mode.

The repairs (:mod:`streams.transactions`, :mod:`streams.recovery`, :mod:`streams.table_writes`,
:mod:`streams.disk_state`)
override or read private members of these frameworks. ``pyproject.toml`` pins the three to the
exact versions the repairs were proven with (the SIGKILL and repeated-kill tests); at worker
start :func:`check` verifies that every member is still there with the parameters the repairs
call it with, and refuses to start with a message naming the ones that are not, so an upgrade
cannot silently undo a repair.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiokafka import AIOKafkaProducer as AIOKafka
from aiokafka.producer.transaction_manager import (
    TransactionManager as AIOKafkaTransactionManager,
)
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)

PROVEN_WITH = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}

# (owner, member, the parameters the repairs pass it; None: an attribute, not called)
METHODS: tuple[tuple[Any, str, tuple[str, ...] | None], ...] = (
    (
        TransactionManager,
        "send",
        ("self", "topic", "key", "value", "partition", "timestamp", "headers", "transactional_id"),
    ),  # fmt: skip
    (TransactionManager, "commit", ("self", "offsets", "start_new_transaction")),
    (Consumer, "_new_consumer_thread", ("self",)),
    (Consumer, "_wait_next_records", ("self", "timeout")),
    (Consumer, "getmany", ("self", "timeout")),
    (Consumer, "_new_offset", ("self", "tp")),
    (Consumer, "on_partitions_revoked", ("self", "revoked")),
    (Consumer, "perform_seek", ("self",)),
    (Consumer, "ack", ("self", "message")),
    (Consumer, "force_commit", ("self", "topics", "start_new_transaction")),
    (Consumer, "_commit_offsets", ("self", "offsets", "start_new_transaction")),
    (TransactionManager, "on_rebalance", ("self", "assigned", "revoked", "newly_assigned")),
    (TransactionManager, "_tps_to_transactional_ids", ("self", "tps")),
    (AIOKafkaProducer, "stop_transaction", ("self", "transactional_id")),
    (
        AIOKafkaProducer,
        "commit_transactions",
        ("self", "tid_to_offset_map", "group_id", "start_new_transaction"),
    ),
    (RocksDBStore, "_set", ("self", "key", "value")),
    (RocksDBStore, "_get", ("self", "key")),
    (RocksDBStore, "_del", ("self", "key")),
    (RocksDBStore, "_contains", ("self", "key")),
    (RocksDBStore, "_iteritems", ("self",)),
    (RocksDBStore, "_db_for_partition", ("self", "partition")),
    (RocksDBStore, "_visible_items", ("self", "db")),
    (RocksDBStore, "revoke_partitions", ("self", "table", "tps")),
    (RocksDBStore, "offset_key", None),
    (FlowControlEvent, "resume", ("self",)),
    (FlowControlEvent, "clear", ("self",)),
    (AIOKafkaConsumerThread, "_highwaters", ("self", "partitions")),
    (AIOKafkaConsumerThread, "_ensure_consumer", ("self",)),
    (AIOKafkaConsumerThread, "call_thread", None),
    (Recovery, "_build_highwaters", ("self", "consumer", "tps", "destination", "title")),
    (Recovery, "_seek_offsets", ("self", "consumer", "tps", "offsets", "title")),
    (TableManager, "_recovery", None),
    (AIOKafkaProducer, "_transaction_producers", None),
    (AIOKafkaTransactionManager, "is_in_transaction", ("self",)),
)
# Read on the app's consumer and flow control (instance attributes, set by their constructors).
CONSUMER_ATTRIBUTES = ("callback", "flow_active", "_read_offset", "_acked", "_gap",
                       "_acked_index", "_unacked_messages", "_waiting_for_ack",
                       "_buffered_partitions")  # fmt: skip
FLOW_CONTROL_ATTRIBUTES = ("_queues",)


def problems(methods: Iterable[tuple[Any, str, tuple[str, ...] | None]] = METHODS,
             app: Any = None) -> list[str]:  # fmt: skip
    """What changed: the members of ``methods``, and with ``app`` (a *started* app: creating
    its consumer early changes how Faust wires it) its consumer's and flow control's
    attributes."""
    found = []
    for owner, name, params in methods:
        where = f"{owner.__module__}.{owner.__name__}.{name}"
        member: Any = getattr(owner, name, _MISSING)
        if member is _MISSING:
            found.append(f"{where} is gone")
        elif params is not None:
            actual = tuple(inspect.signature(member).parameters)
            if actual[: len(params)] != params:
                found.append(f"{where} takes {actual}, the repairs call it with {params}")
    # instance attributes set by constructors that need a running loop: read from their code
    for owner, name in ((AIOKafkaTransactionManager, "state"), (AIOKafka, "_txn_manager")):
        if f"self.{name} =" not in inspect.getsource(owner.__init__):
            found.append(f"{owner.__module__}.{owner.__name__}.{name} is no longer set")
    if app is not None:
        for target, names in ((app.consumer, CONSUMER_ATTRIBUTES),
                              (app.flow_control, FLOW_CONTROL_ATTRIBUTES)):  # fmt: skip
            found += [f"{type(target).__name__}.{name} is gone" for name in names
                      if not hasattr(target, name)]  # fmt: skip
    return found


_MISSING = object()


def check(app: Any = None) -> None:
    """Refuse to start when a member a repair relies on is gone or changed shape. Call it
    without ``app`` before the worker starts, and with it once the worker runs
    (:func:`check_when_started`): touching ``app.consumer`` before Faust's worker creates it
    changes how it is wired (measured: its outputs were no longer transactional)."""
    for package, proven in PROVEN_WITH.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != proven:
            log.warning("%s %s is installed; the exactly-once repairs were proven with %s",
                        package, installed, proven)  # fmt: skip
    found = problems(app=app)
    if found:
        raise RuntimeError("refusing to start: the exactly-once repairs rely on framework "
                           f"members that changed: {found}; install the versions pinned in "
                           "pyproject.toml")  # fmt: skip


def check_when_started(app: Any) -> None:
    """Check the consumer's and flow control's attributes once the worker made them (a crash
    there stops the worker)."""

    @app.task  # type: ignore[misc]
    async def _check_framework_instances() -> None:
        check(app)
