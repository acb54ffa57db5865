"""Agent: the invoice side. Invoices and claims' citations in (keyed by invoice key); answers to
the claim side, and rejections of invoices whose tax arithmetic fails. Rules:
:mod:`streams.invoice_case`."""

from __future__ import annotations

from typing import Any

from erpbridge.failures import Stage
from erpbridge.metrics import STREAM_EVENTS, STREAM_TABLE_KEYS
from erpbridge.model import invoice_key
from streams import invoice_case
from streams.agents.outputs import decode_or_reject, event_ms, origin_of, reject, serve
from streams.app import claim_events, codecs, invoice_inputs, invoice_refs, invoices
from streams.disk_state import key_count
from streams.invoice_case import Answer, InvoiceCase
from streams.table_writes import put

AGENT = "invoices"
ROLES = {codecs.topic(role): role for role in ("invoices_raw", "invoice_refs")}


async def _on_event(event: Any, role: str) -> None:
    await (_on_invoice if role == "invoices_raw" else _on_citation)(event)


STREAM_TABLE_KEYS.labels("invoices").set_function(lambda: key_count(invoices))  # at a scrape


def _case(key: str) -> InvoiceCase | None:
    value = invoices.get(key.encode())
    return None if value is None else InvoiceCase.from_json(value)


async def _on_invoice(event: Any) -> None:
    STREAM_EVENTS.labels(AGENT, "in").inc()
    invoice = await decode_or_reject(AGENT, Stage.VALIDATE, "invoices_raw", event)
    if invoice is None:
        return
    key = invoice_key(invoice["invoice_code"], invoice["invoice_number"])
    case, answers, verdict = invoice_case.on_invoice(_case(key), key, event.message.partition,
                                                     event_ms(event), invoice)  # fmt: skip
    STREAM_EVENTS.labels(AGENT, verdict).inc()
    if verdict == "invalid":
        origin = {**origin_of(event), **invoice.get("origin", {})}  # and file + entry, or request
        await reject(AGENT, Stage.VALIDATE, event.key, event.value, origin,
                     "invoice_tax_mismatch", case.problems, key, event.headers)  # fmt: skip
    if verdict == "valid" and case.red_of is not None:  # offsets its blue invoice, in its case
        red = {"kind": "REVERSED", "claim_id": "", "red_invoice": key,
               "red_total": str(invoice["total"])}  # fmt: skip
        await invoice_refs.send(key=case.red_of.encode(), value=red)
    await _apply(event, case, answers)


async def _on_citation(event: Any) -> None:
    message = await decode_or_reject(AGENT, Stage.CORRELATE, "invoice_refs", event)
    if message is None:
        return
    key, kind = event.key.decode(), message["kind"]
    at = (_case(key), key, event.message.partition, event_ms(event))
    if kind == "REVERSED":
        case, answers = invoice_case.on_reversed(*at, message["red_invoice"], message["red_total"])
    else:
        submitted = message.get("submitted_at")
        submitted_ms = None if submitted is None else int(submitted.timestamp() * 1000)
        case, answers = invoice_case.on_cited(*at, message["claim_id"], kind, submitted_ms)
    await _apply(event, case, answers)


async def _apply(event: Any, case: InvoiceCase, answers: list[Answer]) -> None:
    put(invoices, event, case.key.encode(), case.to_json())
    for answer in answers:
        if answer.answer == "duplicate":
            STREAM_EVENTS.labels(AGENT, "flagged").inc()
        message = {"kind": "INVOICE_ANSWER", "invoice": answer.invoice, "answer": answer.answer,
                   "note": answer.note, "owner": answer.owner, "facts": answer.facts}  # fmt: skip
        await claim_events.send(key=answer.claim_id.encode(), value=message)


serve(invoice_inputs, AGENT, ROLES, _on_event)
