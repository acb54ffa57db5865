"""Reconciliation: what the books say was sent, against what the ERP holds, document by document.

Differences, each naming the posting (the ERP document's reference) and its kind:

- ``missing_in_erp``: sent, and the ERP has no document with its reference;
- ``unexpected_in_erp``: a live document in the integration's scope of the ERP (its expense
  journal) in the period, that we never sent (one we never sent that finance cancelled is no
  difference: it is listed apart, ``cancelled_unsent``);
- ``amount_mismatch`` / ``tax_mismatch``: the document's total or tax is not what was sent;
- ``not_posted``: the document is there but draft, cancelled or otherwise not posted;
- ``duplicate_in_erp``: more than one live (not cancelled) document carries the reference: the
  claim is booked twice;
- ``no_feedback``: sent longer than ``feedback_after`` ago and no answer from the sink.

The ERP is read through an :class:`ErpLedger` (the command wires Tryton's or a REST gateway's).
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from books.store import Store

KINDS = ("missing_in_erp", "unexpected_in_erp", "amount_mismatch", "tax_mismatch",
         "not_posted", "duplicate_in_erp", "no_feedback")  # fmt: skip
# A document counts as booked once posted, and stays booked once paid (Tryton's ``paid``: the
# payment reconciled with it)
BOOKED_STATES = ("posted", "paid")
GROUPS = {"day": "posting_date", "cost_centre": "cost_centre", "department": "department",
          "employee": "employee_id"}  # fmt: skip


@dataclass(frozen=True)
class ErpDocument:
    reference: str
    number: str | None
    state: str
    total_minor: int
    tax_minor: int
    date: datetime.date | None


class ErpLedger(Protocol):
    def documents(self, references: list[str]) -> list[ErpDocument]:
        """The ERP's documents with these references (any state)."""

    def documents_between(
        self, start: datetime.date, end: datetime.date
    ) -> list[ErpDocument] | None:
        """The documents in the integration's scope dated from ``start`` to ``end`` inclusive;
        None when the ERP offers no such listing (``unexpected_in_erp`` is then not checked)."""

    def close(self) -> None:
        """Let go of connections."""


@dataclass(frozen=True)
class Difference:
    kind: str
    reference: str
    group: str | None
    sent_minor: int | None
    erp_minor: int | None
    document: str | None
    detail: str


@dataclass
class Reconciliation:
    start: datetime.date
    end: datetime.date
    by: str
    sent: int = 0
    sent_minor: int = 0
    booked: int = 0
    booked_minor: int = 0
    differences: list[Difference] = field(default_factory=list)
    per_group: dict[str, dict[str, int]] = field(default_factory=dict)
    per_day: dict[str, dict[str, int]] = field(default_factory=dict)  # sent vs booked, by day
    scope_checked: bool = True  # False: the ledger cannot list its documents by date
    # documents in scope we never sent that were cancelled in the ERP: reported apart
    cancelled_unsent: list[ErpDocument] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def counts(self) -> dict[str, int]:
        found = Counter(d.kind for d in self.differences)
        return {kind: found.get(kind, 0) for kind in KINDS}

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "by": self.by,
                "sent": self.sent, "sent_minor": self.sent_minor, "booked": self.booked,
                "booked_minor": self.booked_minor, "ok": self.ok, "counts": self.counts(),
                "scope_checked": self.scope_checked, "per_group": self.per_group,
                "per_day": self.per_day,
                "differences": [d.__dict__ for d in self.differences],
                "cancelled_unsent": [{"reference": d.reference, "document": d.number,
                                      "erp_minor": d.total_minor,
                                      "date": d.date.isoformat() if d.date else None}
                                     for d in self.cancelled_unsent]}  # fmt: skip


def _tally(table: dict[str, dict[str, int]], key: str) -> dict[str, int]:
    return table.setdefault(key, {"sent": 0, "sent_minor": 0, "booked": 0, "booked_minor": 0,
                                  "differences": 0})  # fmt: skip


HOUR = datetime.timedelta(hours=1)


def reconcile(store: Store, ledger: ErpLedger, start: datetime.date, end: datetime.date, *,
              by: str = "day", feedback_after: datetime.timedelta = HOUR, chunk: int = 1000,
              now: datetime.datetime | None = None) -> Reconciliation:  # fmt: skip
    if by not in GROUPS:
        raise ValueError(f"--by one of {', '.join(GROUPS)}")
    now = now or datetime.datetime.now(datetime.UTC)
    rows = store.query(
        f"""select p.posting_id, p.total_minor, p.tax_minor, cast(p.{GROUPS[by]} as varchar),
                   p.created_at, f.status, p.posting_date
            from postings p left join feedback f on f.posting_id = p.posting_id
            where p.posting_date between ? and ? order by p.posting_id""",  # noqa: S608
        [start, end])  # fmt: skip
    result = Reconciliation(start, end, by)
    sent = {row[0]: row for row in rows}
    erp = _by_reference(_in_chunks(ledger, list(sent), chunk))
    for reference, (_, total, tax, group, created, answered, day) in sent.items():
        result.sent += 1
        result.sent_minor += total
        tallies = (_tally(result.per_group, group or "-"), _tally(result.per_day, str(day)))
        for tally in tallies:
            tally["sent"] += 1
            tally["sent_minor"] += total
        documents = erp.get(reference, [])
        document = documents[0] if documents else None
        found = _compare(reference, group, total, tax, document)
        live = [d for d in documents if d.state != "cancelled"]
        if len(live) > 1:
            numbers = ", ".join(d.number or "?" for d in live)
            found.append(Difference("duplicate_in_erp", reference, group, total,
                                    sum(d.total_minor for d in live), numbers,
                                    f"{len(live)} live documents carry it"))  # fmt: skip
        if answered is None and _aware(created) + feedback_after < now:
            found.append(Difference("no_feedback", reference, group, total, None, None,
                                    f"no answer from the sink since {created}"))  # fmt: skip
        if document is not None and document.state in BOOKED_STATES:
            result.booked += 1
            result.booked_minor += document.total_minor
            for tally in tallies:
                tally["booked"] += 1
                tally["booked_minor"] += document.total_minor
        for tally in tallies:
            tally["differences"] += len(found)
        result.differences.extend(found)
    in_scope = ledger.documents_between(start, end)
    result.scope_checked = in_scope is not None
    for document in in_scope or ():
        if document.reference not in sent:
            if document.state == "cancelled":  # never ours and void: not a difference
                result.cancelled_unsent.append(document)
                continue
            if document.date is not None:
                _tally(result.per_day, str(document.date))["differences"] += 1
            result.differences.append(
                Difference(
                    "unexpected_in_erp",
                    document.reference,
                    None,
                    None,
                    document.total_minor,
                    document.number,
                    f"{document.number or '?'} ({document.state}) was never sent",
                )
            )
    return result


def _compare(reference: str, group: str | None, total: int, tax: int,
             document: ErpDocument | None) -> list[Difference]:  # fmt: skip
    if document is None:
        return [Difference("missing_in_erp", reference, group, total, None, None,
                           "the ERP has no document with this reference")]  # fmt: skip
    found = []
    if document.state not in BOOKED_STATES:
        found.append(
            Difference(
                "not_posted",
                reference,
                group,
                total,
                document.total_minor,
                document.number,
                f"the document is {document.state}",
            )
        )
    if document.total_minor != total:
        found.append(Difference("amount_mismatch", reference, group, total, document.total_minor,
                                document.number, f"sent {total / 100:.2f}, the ERP holds "
                                f"{document.total_minor / 100:.2f}"))  # fmt: skip
    if document.tax_minor != tax:
        found.append(Difference("tax_mismatch", reference, group, tax, document.tax_minor,
                                document.number, f"input VAT sent {tax / 100:.2f}, the ERP "
                                f"holds {document.tax_minor / 100:.2f}"))  # fmt: skip
    return found


def _by_reference(documents: Iterable[ErpDocument]) -> dict[str, list[ErpDocument]]:
    """The documents of each reference, the one to compare first: posted, then any live one,
    then cancelled (a document cancelled and entered again by hand is compared as re-entered)."""
    found: dict[str, list[ErpDocument]] = {}
    for document in documents:
        found.setdefault(document.reference, []).append(document)
    rank = {**dict.fromkeys(BOOKED_STATES, 0), "cancelled": 2}
    for listed in found.values():
        listed.sort(key=lambda d: rank.get(d.state, 1))
    return found


def _in_chunks(ledger: ErpLedger, references: list[str], size: int) -> Iterable[ErpDocument]:
    for n in range(0, len(references), size):
        yield from ledger.documents(references[n : n + size])


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
