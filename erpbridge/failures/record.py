"""The one failure record, on every failure topic: rejections (sources and processors), the ERP
dead letters and the feedback dead letters.

A failure record is the original input, untouched, with the failure's context in headers:

- key and value: the original key and bytes (a Kafka record's, or the body, row or item a
  source refused); headers: the original record's headers, then the context below;
- Kafka Connect's names where they apply: ``__connect.errors.topic`` / ``.partition`` /
  ``.offset`` (where a Kafka input came from), ``.stage``, ``.class.name`` (the connector:
  a source, a processor agent, an ERP writer), ``.exception.class.name``,
  ``.exception.message``, ``.exception.stacktrace``;
- ours: ``erpbridge.errors.reason`` (a machine-readable code), ``.problems`` (JSON list, every
  problem as "field: message"), ``.attempts``, ``.first_failed_at``, ``.last_failed_at``
  (ISO 8601, UTC), ``.origin`` (JSON map: file and line, source and request id, or topic,
  partition and offset), ``.entity_id`` (claim or invoice id when known), ``.content_type``
  (what the original bytes are).

:meth:`FailureRecord.to_message` writes it; :meth:`FailureRecord.read` reads it back from any
failure topic.
"""

from __future__ import annotations

import datetime
import json
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from erpbridge.failures.retry import Attempts
from erpbridge.failures.stage import Stage

Headers = list[tuple[str, bytes]]
CONNECT = "__connect.errors."
OURS = "erpbridge.errors."
_STACK_LIMIT = 8000


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class FailureRecord:
    stage: Stage
    reason: str
    connector: str
    error_class: str
    message: str
    problems: tuple[str, ...] = ()
    attempts: int = 1
    first_failed_at: datetime.datetime = field(default_factory=_now)
    last_failed_at: datetime.datetime = field(default_factory=_now)
    origin: Mapping[str, str] = field(default_factory=dict)
    entity_id: str | None = None
    content_type: str | None = None
    stacktrace: str | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()  # the original's, without any failure context
    timestamp_ms: int | None = None  # the original's, when it was a Kafka record

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def refused(cls, *, stage: Stage, reason: str, connector: str, problems: Sequence[str],
                original: bytes | None, content_type: str | None, origin: Mapping[str, Any],
                entity_id: str | None = None, key: bytes | None = None,
                headers: Sequence[tuple[str, bytes]] = (),
                timestamp_ms: int | None = None) -> FailureRecord:  # fmt: skip
        """Input refused on sight (a bad row, request, item or event): one attempt, no error
        object; the problems say what is wrong."""
        return cls(stage=stage, reason=reason, connector=connector, error_class="Refused",
                   message="; ".join(problems) or reason, problems=tuple(problems),
                   origin=_strings(origin), entity_id=entity_id, content_type=content_type,
                   key=key, value=original, headers=_without_context(headers),
                   timestamp_ms=timestamp_ms)  # fmt: skip

    @classmethod
    def of_record(cls, record: Any, *, stage: Stage, reason: str, connector: str,
                  error: BaseException, attempts: Attempts | None = None,
                  content_type: str | None = "avro/binary",
                  entity_id: str | None = None) -> FailureRecord:  # fmt: skip
        """A Kafka record (``topic``, ``partition``, ``offset``, ``key``, ``value``, ``headers``,
        ``timestamp``) that failed with ``error``, after ``attempts``."""
        now = _now()
        first = attempts.first_at if attempts and attempts.first_at else now
        last = attempts.last_at if attempts and attempts.last_at else now
        stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return cls(stage=stage, reason=reason, connector=connector,
                   error_class=type(error).__qualname__, message=str(error),
                   attempts=max(attempts.count if attempts else 1, 1), first_failed_at=first,
                   last_failed_at=last,
                   origin={"topic": record.topic, "partition": str(record.partition),
                           "offset": str(record.offset)},
                   entity_id=entity_id, content_type=content_type,
                   stacktrace=stack[-_STACK_LIMIT:], key=record.key, value=record.value,
                   headers=_without_context(record.headers or ()),
                   timestamp_ms=record.timestamp)  # fmt: skip

    # -- writing and reading ------------------------------------------------------------------
    def context(self) -> dict[str, str]:
        context = {
            f"{CONNECT}{name}": self.origin[name]
            for name in ("topic", "partition", "offset")
            if name in self.origin
        }
        context.update({
            f"{CONNECT}stage": str(self.stage),
            f"{CONNECT}class.name": self.connector,
            f"{CONNECT}exception.class.name": self.error_class,
            f"{CONNECT}exception.message": self.message,
            f"{OURS}reason": self.reason,
            f"{OURS}problems": json.dumps(list(self.problems), ensure_ascii=False),
            f"{OURS}attempts": str(self.attempts),
            f"{OURS}first_failed_at": self.first_failed_at.isoformat(),
            f"{OURS}last_failed_at": self.last_failed_at.isoformat(),
            f"{OURS}origin": json.dumps(dict(self.origin), ensure_ascii=False, sort_keys=True),
        })  # fmt: skip
        if self.stacktrace:
            context[f"{CONNECT}exception.stacktrace"] = self.stacktrace
        if self.entity_id is not None:
            context[f"{OURS}entity_id"] = self.entity_id
        if self.content_type is not None:
            context[f"{OURS}content_type"] = self.content_type
        return context

    def to_message(self) -> dict[str, Any]:
        """Keyword arguments for a producer's ``send`` (key, value, headers, timestamp)."""
        headers = list(self.headers) + [(k, v.encode()) for k, v in self.context().items()]
        message: dict[str, Any] = {"key": self.key, "value": self.value, "headers": headers}
        if self.timestamp_ms is not None:
            message["timestamp_ms"] = self.timestamp_ms
        return message

    @classmethod
    def read(cls, record: Any) -> FailureRecord:
        """A record read from any failure topic."""
        raw = list(record.headers or ())
        context = {k: v.decode("utf-8", "replace") for k, v in raw if _is_context(k)}
        return cls(
            stage=Stage(context[f"{CONNECT}stage"]),
            reason=context.get(f"{OURS}reason", ""),
            connector=context.get(f"{CONNECT}class.name", ""),
            error_class=context.get(f"{CONNECT}exception.class.name", ""),
            message=context.get(f"{CONNECT}exception.message", ""),
            problems=tuple(json.loads(context.get(f"{OURS}problems", "[]"))),
            attempts=int(context.get(f"{OURS}attempts", "1")),
            first_failed_at=datetime.datetime.fromisoformat(context[f"{OURS}first_failed_at"]),
            last_failed_at=datetime.datetime.fromisoformat(context[f"{OURS}last_failed_at"]),
            origin=json.loads(context.get(f"{OURS}origin", "{}")),
            entity_id=context.get(f"{OURS}entity_id"),
            content_type=context.get(f"{OURS}content_type"),
            stacktrace=context.get(f"{CONNECT}exception.stacktrace"),
            key=record.key,
            value=record.value,
            headers=tuple(_without_context(raw)),
            timestamp_ms=getattr(record, "timestamp", None),
        )

    @classmethod
    def read_any(cls, record: Any) -> FailureRecord:
        """:meth:`read`, or, for a record on a failure topic that carries no failure context
        (written by something else), a failure record saying so, so that nothing is skipped."""
        try:
            return cls.read(record)
        except (KeyError, ValueError) as exc:
            return cls.of_record(record, stage=Stage.DECODE, reason="unreadable_failure",
                                 connector="reader",
                                 error=ValueError(f"not a failure record: {exc}"))  # fmt: skip

    def describe(self) -> str:
        return "; ".join(self.problems) or self.message or self.reason


def _is_context(name: str) -> bool:
    return name.startswith(CONNECT) or name.startswith(OURS)


def _without_context(headers: Sequence[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    """A replayed failure's old context is not part of the original."""
    return tuple((k, v) for k, v in headers if not _is_context(k))


def _strings(origin: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): str(value) for key, value in origin.items()}
