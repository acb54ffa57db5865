"""An ERP writer as the sink runner's target: postings in, ErpFeedback events out."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer

from connectors.erp.base import Booking, ErpWriter
from connectors.erp.errors import PermanentErpError
from erpbridge import tracing
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures.stage import Stage
from erpbridge.metrics import SINK_RECORDS
from erpbridge.model import Posting

log = logging.getLogger(__name__)


class ErpTarget:
    stage = Stage.PUT
    input_role = "postings"
    dead_letter_role = "erp_dead_letter"

    def __init__(self, settings: Settings, writer: ErpWriter, codecs: TopicCodecs) -> None:
        self.settings, self.writer, self.codecs = settings, writer, codecs
        self.name = writer.name
        self.producer: KafkaProducer | None = None

    def start(self, producer: KafkaProducer) -> None:
        self.producer = producer

    def decode(self, value: bytes) -> Posting:
        return Posting.from_record(self.codecs.deserializer("postings")(value))

    def write_many(self, items: Sequence[Posting]) -> list[Any]:
        return list(self.writer.book_many(items))

    def probe(self) -> bool:
        return bool(self.writer.probe())

    def written(self, item: Posting, answer: Booking) -> str:
        outcome = "already_booked" if answer.already_booked else "booked"
        log.info("%s claim_id=%s posting_id=%s erp_number=%s state=%s", outcome, item.claim_id,
                 item.posting_id, answer.number, answer.state)  # fmt: skip
        self._feedback(item, outcome.upper(), answer, None)
        return outcome

    def given_up(self, item: Posting, error: BaseException) -> None:
        status = "REFUSED" if isinstance(error, PermanentErpError) else "FAILED"
        self._feedback(item, status, None, str(error))

    def close(self) -> None:
        self.writer.close()

    def _feedback(self, posting: Posting, status: str, booking: Booking | None,
                  message: str | None) -> None:  # fmt: skip
        if not self.settings.sink_feedback or self.producer is None:
            return
        value: dict[str, Any] = {
            "claim_id": posting.claim_id,
            "posting_id": posting.posting_id,
            "erp": self.name,
            "status": status,
            "document_number": booking.number if booking else None,
            "document_id": booking.document_id if booking else None,
            "total_minor": posting.total_minor,
            "voucher_number": booking.voucher if booking else None,
            "message": message,
            "answered_at": datetime.datetime.now(datetime.UTC),
            "posting_date": posting.posting_date,
            "posting_kind": posting.kind,
            "reverses": posting.reverses,
        }
        self.producer.send(self.codecs.topic("erp_feedback"), key=posting.claim_id.encode(),
                           value=self.codecs.serializer("erp_feedback")(value),
                           headers=tracing.headers_of())  # fmt: skip
        SINK_RECORDS.labels(self.name, "feedback").inc()
