"""Dead-letter records: the original key, value and headers unchanged, plus error context headers.

Header names follow Kafka Connect's (``__connect.errors.*``) so existing tooling reads them.
"""

from __future__ import annotations

import datetime
import traceback

from kafka.consumer.fetcher import ConsumerRecord

Headers = list[tuple[str, bytes]]


def dead_letter_headers(
    record: ConsumerRecord, stage: str, error: BaseException, attempts: int, erp: str
) -> Headers:
    now = datetime.datetime.now(datetime.UTC).isoformat()
    context = {
        "__connect.errors.topic": record.topic,
        "__connect.errors.partition": str(record.partition),
        "__connect.errors.offset": str(record.offset),
        "__connect.errors.stage": stage,
        "__connect.errors.class.name": erp,
        "__connect.errors.exception.class.name": type(error).__qualname__,
        "__connect.errors.exception.message": str(error),
        "__connect.errors.exception.stacktrace": "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )[-8000:],
        "erpbridge.errors.attempts": str(attempts),
        "erpbridge.errors.failed_at": now,
    }
    original = [(key, value) for key, value in (record.headers or [])]
    return original + [(key, value.encode()) for key, value in context.items()]
