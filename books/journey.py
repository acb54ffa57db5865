"""One claim's journey: every record that concerns it, from the pipeline's topics, in order.

The books ingest one row per record into ``journey`` (:func:`rows_of`): the claim and its
approvals and invoices as they came in (with their provenance: file and line, or request id),
each status the processors gave it, its postings, the ERP's answers (booked, refused, paid) and
every failure record (refused inputs, dead-lettered postings and deliveries). :func:`trace`
finds a claim by its id, an invoice's number or an input's event id and lays out its events with
the time spent between them; :func:`search` lists claims by employee and date.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from books.store import Store
from erpbridge.failures.record import FailureRecord
from erpbridge.model import invoice_key

FAILURE_ROLES = ("rejected", "erp_dead_letter", "feedback_dead_letter")
INPUT_ROLES = ("claims_raw", "approvals_raw", "invoices_raw")


def rows_of(role: str, record: Any, value: Any) -> list[tuple[Any, ...]]:
    """The journey rows of one record: (topic, partition, offset, claim_id, at, stage, event,
    summary, reference, origin, employee_id)."""
    found = _event(role, value)
    if found is None:
        return []
    claim_id, at, stage, event, summary, reference, origin, employee = found
    replayed_by = dict(getattr(record, "headers", None) or ()).get("erpbridge.replay.by")
    if replayed_by is not None:  # a failure record sent again by an operator (erpbridge dlq)
        summary = f"replayed by {replayed_by.decode('utf-8', 'replace')}: {summary}"
    return [(record.topic, record.partition, record.offset, claim_id, _naive_utc(at), stage,
             event, summary, reference, origin, employee)]  # fmt: skip


def _event(role: str, value: Any) -> tuple[Any, ...] | None:
    if role in FAILURE_ROLES:
        failure: FailureRecord = value
        entity = failure.entity_id or (failure.key or b"").decode("utf-8", "replace") or None
        what = f"{failure.stage} {failure.connector}: {failure.describe()}"
        if failure.attempts > 1:
            what += f" (after {failure.attempts} attempts)"
        return (entity, failure.last_failed_at, "failed", f"{role}: {failure.reason}", what,
                entity, _json(failure.origin), None)  # fmt: skip
    if role == "claims_raw":
        employee = value.get("employee") or {}
        what = (f"claim from {value['source_system']} by {employee.get('name') or '?'}, "
                f"{len(value.get('lines') or ())} line(s)")  # fmt: skip
        if value.get("purpose"):
            what += f": {value['purpose']}"
        return (value["claim_id"], value["submitted_at"], "input", "claim", what,
                value["event_id"], _json(value.get("origin")), employee.get("id"))  # fmt: skip
    if role == "approvals_raw":
        who = value.get("approver_name") or value.get("approver_id") or "?"
        step = value.get("step_name") or value.get("step")
        what = f"{value['decision']} at {step} by {who}"
        if value.get("final"):
            what += " (final)"
        if value.get("comment"):
            what += f": {value['comment']}"
        return (value["claim_id"], value["decided_at"], "approval", str(value["decision"]), what,
                value["event_id"], None, None)  # fmt: skip
    if role == "invoices_raw":
        key = invoice_key(value.get("invoice_code"), value["invoice_number"])
        what = (f"{value['invoice_type']} invoice {key}: {value['total']} from "
                f"{value.get('seller_name') or '?'}")  # fmt: skip
        return (value.get("claim_id"), value["received_at"], "input", "invoice", what, key,
                _json(value.get("origin")), None)  # fmt: skip
    if role == "claim_status":
        status = str(value["status"])
        detail = value.get("detail")
        if isinstance(detail, list | tuple):
            detail = "; ".join(str(d) for d in detail)
        what = "; ".join(str(v) for v in (value.get("reason"), detail) if v)
        return (value["claim_id"], value["occurred_at"], "status", status, what or status,
                value.get("related_claim_id"), None, None)  # fmt: skip
    if role == "postings":
        what = (f"{value.get('kind') or 'BOOKING'} {value['posting_id']}: "
                f"{value['total_minor'] / 100:.2f} {value['currency']} dated "
                f"{value['posting_date']}")  # fmt: skip
        return (value["claim_id"], value["created_at"], "posting", value.get("kind") or "BOOKING",
                what, value["posting_id"], None, value.get("employee_id"))  # fmt: skip
    if role == "erp_feedback":
        status = str(value["status"])
        if status == "PAID":
            what = (f"paid {(value.get('paid_minor') or 0) / 100:.2f} on {value.get('paid_on')} "
                    f"({value.get('payment_reference') or 'no reference'})")  # fmt: skip
        elif status in ("BOOKED", "ALREADY_BOOKED"):
            what = (f"{value['erp']} document {value.get('document_number') or '?'}, voucher "
                    f"{value.get('voucher_number') or '-'}")  # fmt: skip
        else:
            what = f"{value['erp']}: {value.get('message') or status}"
        return (value["claim_id"], value["answered_at"], "erp", status, what,
                value.get("document_number") or value["posting_id"], None, None)  # fmt: skip
    return None


def _json(value: Any) -> str | None:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str) if value else None


def _naive_utc(at: Any) -> Any:
    """Timestamps stored in UTC without a zone (both engines' ``timestamp``)."""
    if isinstance(at, datetime.datetime) and at.tzinfo is not None:
        return at.astimezone(datetime.UTC).replace(tzinfo=None)
    return at


@dataclass(frozen=True)
class Event:
    at: datetime.datetime
    stage: str
    event: str
    summary: str
    reference: str | None
    origin: dict[str, Any] | None
    source: str  # topic[partition]@offset
    since_previous_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat() + "Z", "stage": self.stage, "event": self.event,
                "summary": self.summary, "reference": self.reference, "origin": self.origin,
                "source": self.source, "since_previous_s": self.since_previous_s}  # fmt: skip


@dataclass
class Journey:
    asked: str
    claims: list[str]
    events: list[Event] = field(default_factory=list)

    def stages(self) -> dict[str, float | None]:
        """Seconds spent from the first input to the first posting, to the ERP's booking, to
        the payment (None: not reached)."""
        first: dict[str, datetime.datetime] = {}
        for event in self.events:
            key = ("paid" if event.event == "PAID" else "booked"
                   if event.event in ("BOOKED", "ALREADY_BOOKED") else event.stage)  # fmt: skip
            first.setdefault(key, event.at)
        spans = {"input_to_posting": ("input", "posting"), "posting_to_booked": ("posting",
                 "booked"), "booked_to_paid": ("booked", "paid")}  # fmt: skip
        return {name: (first[b] - first[a]).total_seconds() if a in first and b in first
                else None for name, (a, b) in spans.items()}  # fmt: skip

    def held_over_budget(self) -> str | None:
        """The claim's id when its latest status holds it over budget (one claim only)."""
        if len(self.claims) != 1:
            return None
        statuses = [e for e in self.events if e.stage == "status" and e.event not in ("WAITING",
                    "REDRIVEN")]  # fmt: skip
        if statuses and statuses[-1].event == "HELD" and statuses[-1].summary.startswith(
                "over_budget"):  # fmt: skip
            return self.claims[0]
        return None

    def to_json(self) -> dict[str, Any]:
        return {"asked": self.asked, "claims": self.claims, "stages": self.stages(),
                "events": [event.to_json() for event in self.events]}  # fmt: skip


def trace(store: Store, asked: str) -> Journey:
    """The journey of the claim ``asked`` names: its id, an invoice's number (code-number), a
    posting id, an ERP document number or an input's event id."""
    # point lookups on the two indexes (an OR of the two would scan the table)
    claims = sorted({str(row[0]) for row in store.query(
        "select claim_id from journey where claim_id = ? union "
        "select claim_id from journey where reference = ? and claim_id is not null",
        [asked, asked])})  # fmt: skip
    columns = ("happened_at, stage, event, summary, reference, origin, src_topic, "
               "src_partition, src_offset")  # fmt: skip
    marks = ", ".join("?" for _ in claims)
    by_claim = (
        f"select {columns} from journey where claim_id in ({marks}) union all " if claims else ""
    )
    rows = store.query(
        f"""{by_claim}select {columns} from journey where reference = ? and claim_id is null
            order by 1, 7, 8, 9""",  # noqa: S608  marks only
        [*claims, asked],
    )
    journey = Journey(asked, claims)
    previous = None
    for at, stage, event, summary, reference, origin, topic, partition, offset in rows:
        since = None if previous is None else round((at - previous).total_seconds(), 3)
        journey.events.append(Event(at, stage, event, summary, reference,
                                    json.loads(origin) if origin else None,
                                    f"{topic}[{partition}]@{offset}", since))  # fmt: skip
        previous = at
    return journey


def search(store: Store, employee: str | None = None, start: datetime.date | None = None,
           end: datetime.date | None = None, limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
    """Claims by employee id and by the day their first record arrived, newest first."""
    conditions: list[str] = ["j.claim_id is not null"]
    params: list[Any] = []
    if start is not None:
        conditions.append("j.happened_at >= ?")
        params.append(datetime.datetime.combine(start, datetime.time()))
    if end is not None:
        conditions.append("j.happened_at < ?")
        params.append(datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time()))
    having = ""
    if employee is not None:
        having = "having max(j.employee_id) = ?"
        params.append(employee)
    rows = store.query(
        f"""select j.claim_id, max(j.employee_id), min(j.happened_at), max(j.happened_at),
                   count(*), (select l.event from journey l where l.claim_id = j.claim_id
                   and l.stage in ('status', 'erp') order by l.happened_at desc limit 1)
            from journey j where {" and ".join(conditions)}
            group by j.claim_id {having} order by min(j.happened_at) desc
            limit {int(limit)}""",  # noqa: S608
        params,
    )
    return [{"claim_id": claim, "employee_id": who, "first_at": first.isoformat() + "Z",
             "last_at": last.isoformat() + "Z", "events": count, "last_status": status}
            for claim, who, first, last, count, status in rows]  # fmt: skip
