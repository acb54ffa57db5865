"""What the sink runner drives: a target that writes records somewhere outside Kafka.

A target decodes a record's bytes into an item, writes a batch of items (one outcome each),
answers a cheap probe while its breaker is open, and hears about each item's final outcome.
The runner (:mod:`connectors.sinks.runner`) owns everything else: polling, ordering per key,
batching, retries, the breaker, dead letters and commits. Targets: an ERP writer
(:mod:`connectors.sinks.erp_target`) and the feedback webhook (:mod:`connectors.sinks.webhook_out`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from kafka import KafkaProducer

from erpbridge.failures.stage import Stage


class Target(Protocol):
    name: str  # metrics label, ``__connect.errors.class.name``, the default group's suffix
    stage: Stage  # where it is called: its failures move the breaker (put, deliver)
    input_role: str  # the topic it reads (a role of erpbridge.topics.Topics)
    dead_letter_role: str  # where what fails for good goes

    def start(self, producer: KafkaProducer) -> None:
        """Open connections; ``producer`` is the runner's, for events the target sends."""

    def decode(self, value: bytes) -> Any:
        """The item a record carries. Raises DecodeError (for good) or a RetryableError."""

    def write_many(self, items: Sequence[Any]) -> list[Any]:
        """Write a batch: one outcome per item, in order (an answer, or the exception that
        item met). Raises only when the whole call failed."""

    def probe(self) -> bool:
        """Does the other side answer? (cheap; used while the circuit breaker is open)"""

    def written(self, item: Any, answer: Any) -> str:
        """``item`` was written: send what follows from it; return the outcome to count."""

    def given_up(self, item: Any, error: BaseException) -> None:
        """``item`` failed for good and was dead-lettered: send what follows from it."""

    def close(self) -> None: ...
