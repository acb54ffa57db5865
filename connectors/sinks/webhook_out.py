"""The feedback webhook: ErpFeedback events POSTed to the expense platform, as a sink target.

Each event is POSTed as JSON, signed like our inbound webhooks (HMAC-SHA256 over
``<timestamp>.<body>``, see :mod:`connectors.sources.signatures`) with an ``Idempotency-Key`` of
``<posting id>:<status>``, so the receiver can drop a redelivery. The sink runner drives it
(:mod:`connectors.sinks.runner`), so the rules are the ERP sink's: 408/425/429/5xx and network
errors retried with ``Retry-After`` honoured, the breaker opening while the receiver is down
(probed with a HEAD request), other 4xx answers and undecodable records dead-lettered to
``<prefix>.erp.feedback.dlq`` (or the delivery stopped under ``sink_errors_tolerance=none``),
and the offset committed only after the receiver's 2xx or the DLQ's ack.

With ``template_file`` the body is that JSON template instead, its ``"$feedback.<field>"``
strings replaced by the event's fields (and ``answered_at_ms``, ``fiscal_period`` YYYY-MM of the
posting date), and ``only_statuses`` limits what is sent: the 合思 (ekuaibao) voucher write-back
is ``connectors/erp/templates/ekuaibao_voucher_writeback.json`` (``flowId``, ``voucherNo``,
``voucherCreateTime``, ``fiscalPeriod``) for BOOKED and ALREADY_BOOKED.

Settings: ``ERPBRIDGE_FEEDBACK_WEBHOOK_*`` (:class:`FeedbackWebhookSettings`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
from kafka import KafkaProducer
from opentelemetry.trace import SpanKind
from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sources.signatures import signed_headers
from erpbridge import tracing
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import RetryableError, Stage, http_failure
from erpbridge.tls import check_ca_file, http_verify

NAME = "feedback_webhook"


class FeedbackWebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_FEEDBACK_WEBHOOK_", frozen=True,
                                      extra="ignore")  # fmt: skip

    url: str = Field("", pattern=r"^(https?://.*)?$")  # the expense platform's feedback endpoint
    secret: SecretStr = SecretStr("")  # the HMAC secret we share with it
    source: str = "erpbridge"  # our X-Erpbridge-Source
    timeout_s: float = Field(30.0, gt=0)
    # the CA that signed the endpoint's https certificate (empty: the system's trust store)
    ca_file: Annotated[str, AfterValidator(check_ca_file)] = ""
    template_file: Path | None = None  # a JSON body template (see the module doc)
    only_statuses: frozenset[str] = frozenset()  # empty: every status


class FeedbackWebhook:
    name = NAME
    stage = Stage.DELIVER
    input_role = "erp_feedback"
    dead_letter_role = "feedback_dead_letter"

    def __init__(self, config: FeedbackWebhookSettings, codecs: TopicCodecs,
                 http: httpx.Client | None = None) -> None:  # fmt: skip
        if not config.url:
            raise ValueError("the feedback webhook needs a URL (ERPBRIDGE_FEEDBACK_WEBHOOK_URL)")
        if not config.secret.get_secret_value():
            raise ValueError("the feedback webhook needs its HMAC secret "
                             "(ERPBRIDGE_FEEDBACK_WEBHOOK_SECRET)")  # fmt: skip
        self.config, self.codecs = config, codecs
        self.http = http or httpx.Client(timeout=config.timeout_s,
                                         verify=http_verify(config.ca_file))  # fmt: skip
        self.template = (None if config.template_file is None else
                         json.loads(config.template_file.read_text(encoding="utf-8")))  # fmt: skip
        if self.template is not None:  # an unknown field fails at start-up
            render_feedback(self.template, _SAMPLE)

    def start(self, producer: KafkaProducer) -> None:
        pass  # sends nothing but the POSTs

    def decode(self, value: bytes) -> dict[str, Any]:
        return self.codecs.deserializer("erp_feedback")(value)

    def write_many(self, items: Sequence[dict[str, Any]]) -> list[Any]:
        outcomes: list[Any] = []
        for n, item in enumerate(items):
            try:
                with tracing.span("feedback.deliver", tracing.item_context(n), SpanKind.CLIENT,
                                  posting_id=item.get("posting_id"),
                                  status=str(item.get("status"))):  # fmt: skip
                    outcomes.append(self._post(item))
            except RetryableError as exc:  # the receiver is unwell: do not hammer it
                return outcomes + [exc] * (len(items) - len(outcomes))
            except Exception as exc:  # noqa: BLE001  classified by the runner's operator
                outcomes.append(exc)
        return outcomes

    def probe(self) -> bool:
        """Does the receiver answer at all (any answer but a gateway's or a server's failure)?"""
        try:
            reply = self.http.head(self.config.url)
        except httpx.HTTPError:
            return False
        return reply.status_code < 500 or reply.status_code == 501

    def written(self, item: dict[str, Any], answer: int) -> str:
        return "skipped" if answer == SKIPPED else "delivered"

    def given_up(self, item: dict[str, Any], error: BaseException) -> None:
        pass  # the dead letter is the record of it

    def close(self) -> None:
        self.http.close()
        self.codecs.close()

    def _post(self, feedback: dict[str, Any]) -> int:
        url = self.config.url
        if self.config.only_statuses and feedback["status"] not in self.config.only_statuses:
            return SKIPPED
        content = _jsonable(feedback) if self.template is None else render_feedback(
            self.template, feedback)  # fmt: skip
        body = json.dumps(content, ensure_ascii=False).encode()
        headers = {**signed_headers(self.config.source, self.config.secret.get_secret_value(),
                                    body),
                   "Content-Type": "application/json",
                   "Idempotency-Key": f"{feedback['posting_id']}:{feedback['status']}",
                   **{k: v.decode() for k, v in tracing.headers_of()}}  # fmt: skip
        try:
            reply = self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RetryableError(f"{url} unreachable: {exc}") from exc
        if not 200 <= reply.status_code < 300:
            raise http_failure(
                reply.status_code,
                reply.headers,
                f"{url} answered HTTP {reply.status_code}: {reply.text[:300]}",
            )
        return reply.status_code


SKIPPED = 0  # not a status this receiver takes


def render_feedback(template: Any, feedback: dict[str, Any]) -> Any:
    """``template`` with each ``"$feedback.<field>"`` string replaced by that field's value."""
    if isinstance(template, dict):
        return {key: render_feedback(value, feedback) for key, value in template.items()}
    if isinstance(template, list):
        return [render_feedback(item, feedback) for item in template]
    if isinstance(template, str) and template.startswith("$feedback."):
        fields = _feedback_fields(feedback)
        name = template.removeprefix("$feedback.")
        if name not in fields:
            raise ValueError(f"unknown feedback field {template} (known: {', '.join(fields)})")
        return fields[name]
    return template


def _feedback_fields(feedback: dict[str, Any]) -> dict[str, Any]:
    answered = feedback["answered_at"]
    day = feedback.get("posting_date") or answered.date()
    return {**_jsonable(feedback), "answered_at_ms": int(answered.timestamp() * 1000),
            "fiscal_period": f"{day:%Y-%m}"}  # fmt: skip


_SAMPLE = {"claim_id": "C", "posting_id": "P", "erp": "x", "status": "BOOKED",
           "document_number": "1", "document_id": "1", "total_minor": 1, "voucher_number": "1",
           "message": None, "answered_at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
           "posting_date": datetime.date(2026, 1, 1), "posting_kind": "BOOKING",
           "reverses": None}  # fmt: skip


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in record.items()}
