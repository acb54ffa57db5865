"""One invoice's case: has it arrived, does its tax arithmetic hold, which claims cite it, which
one owns it, and has it been reversed.

Pure logic, no Kafka, kept per invoice key in the processors' ``invoices`` table.

Ownership does not depend on arrival order. While no claim has booked the invoice, the claim
submitted first owns it (ties by claim id); every other claim citing it is answered ``duplicate``,
naming both claims. A claim ready to post (its claim and final approval are in) says so
(``READY``); the owner of a valid invoice is then answered ``granted``, and the invoice is locked
to it: a claim submitted earlier that cites it later is a duplicate. An owner that is only
``valid`` (not ready yet) may still lose the invoice to an earlier claim. A claim that stops
citing the invoice releases it, unless it booked it.

An invoice the e-invoice platform reports void or red-flushed, or that a red-letter invoice
offsets in full, is reversed: the claims citing it are answered ``reversed`` (held), and the
claim that booked it ``reverse`` (it books a reversal). Answers go to the claim side only when
they change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from streams.claim_case import (
    DUPLICATE,
    GRANTED,
    INVALID,
    PENDING,
    REVERSE,
    REVERSED,
    VALID,
    TableValue,
)
from streams.invoice_checks import tax_problems, vat_facts

_NOT_CONTENT = {"event_id", "source_system", "received_at", "claim_id", "original_sha256"}


@dataclass(frozen=True)
class Answer:
    claim_id: str
    invoice: str
    answer: str  # valid, granted, invalid, duplicate, reversed, reverse
    note: str | None
    owner: str | None
    facts: dict[str, Any] | None = None  # for valid and granted: what booking its VAT needs


@dataclass
class InvoiceCase(TableValue):
    key: str
    partition: int
    touched_ms: int
    hash: str | None = None
    status: str = PENDING  # until the invoice itself arrives
    problems: list[str] = field(default_factory=list)
    claimants: list[str] = field(default_factory=list)  # in citing order
    answered: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] | None = None  # see streams.invoice_checks.vat_facts
    submitted: dict[str, int] = field(default_factory=dict)  # claim -> its submission (ms)
    ready: list[str] = field(default_factory=list)  # claims ready to post
    locked: str | None = None  # the claim the invoice was granted to: it keeps it
    red_of: str | None = None  # a red-letter invoice: the blue invoice it offsets
    reversed_by: str | None = None  # why this invoice no longer supports a claim
    reversal_total: str | None = None  # the red-letter invoice's total (negative), if one


def invoice_hash(invoice: Mapping[str, Any]) -> str:
    content = {k: v for k, v in invoice.items() if k not in _NOT_CONTENT}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def owner_of(case: InvoiceCase) -> str | None:
    """The claim the invoice belongs to: the one it was granted to, else the claim submitted
    first (ties by claim id). Claimants from before submission times were kept (and grants)
    come first, in citing order, as they did then: one of them may have been booked."""
    if case.locked is not None:
        return case.locked
    if not case.claimants:
        return None

    def rank(item: tuple[int, str]) -> tuple[int, int, str]:
        order, claim_id = item
        known = case.submitted.get(claim_id)
        return (0, order, "") if known is None else (1, known, claim_id)

    return min(enumerate(case.claimants), key=rank)[1]


def on_invoice(case: InvoiceCase | None, key: str, partition: int, now_ms: int,
               invoice: Mapping[str, Any]) -> tuple[InvoiceCase, list[Answer], str]:  # fmt: skip
    """The invoice (or a new version of it) arrived: (case, answers, verdict). The verdict is
    ``duplicate``, ``valid`` or ``invalid``; ``case.problems`` say what is wrong."""
    case = case or InvoiceCase(key, partition, now_ms)
    case.touched_ms = now_ms
    digest = invoice_hash(invoice)
    if digest == case.hash:
        return case, [], "duplicate"
    case.hash = digest
    case.problems = tax_problems(invoice)
    case.status = INVALID if case.problems else VALID
    case.facts = vat_facts(invoice)
    case.red_of = invoice.get("red_of")
    status = invoice.get("platform_status") or "NORMAL"
    if status != "NORMAL":
        case.reversed_by = f"the e-invoice platform reports invoice {key} {status}"
    return case, _answers(case), case.status


def on_cited(case: InvoiceCase | None, key: str, partition: int, now_ms: int, claim_id: str,
             kind: str, submitted_ms: int | None = None,
             ) -> tuple[InvoiceCase, list[Answer]]:  # fmt: skip
    """A claim started citing the invoice (``CITE``), is ready to post (``READY``: it cites it
    too), or stopped citing it (``UNCITE``)."""
    case = case or InvoiceCase(key, partition, now_ms)
    case.touched_ms = now_ms
    if kind == "UNCITE":
        if claim_id in case.claimants:
            case.claimants.remove(claim_id)
        for kept in (case.answered, case.submitted):
            kept.pop(claim_id, None)
        if claim_id in case.ready:
            case.ready.remove(claim_id)
        if case.locked == claim_id:
            case.locked = None
        return case, _answers(case)
    if claim_id in case.claimants:
        case.answered.pop(claim_id, None)  # asked again: answer again
    else:
        case.claimants.append(claim_id)
    if submitted_ms is not None:
        case.submitted[claim_id] = submitted_ms
    if kind == "READY" and claim_id not in case.ready:
        case.ready.append(claim_id)
    return case, _answers(case)


def on_reversed(case: InvoiceCase | None, key: str, partition: int, now_ms: int, red_key: str,
                red_total: str | None) -> tuple[InvoiceCase, list[Answer]]:  # fmt: skip
    """A red-letter invoice ``red_key`` offsets this invoice."""
    case = case or InvoiceCase(key, partition, now_ms)
    case.touched_ms = now_ms
    case.reversed_by = f"red-letter invoice {red_key} offsets invoice {key}"
    case.reversal_total = red_total
    return case, _answers(case)


def _answers(case: InvoiceCase) -> list[Answer]:
    owner = owner_of(case)
    usable = case.status == VALID and case.red_of is None and case.reversed_by is None
    if usable and owner is not None and case.locked is None and owner in case.ready:
        case.locked = owner  # granted: the owner books it
    answers = []
    for claim_id in case.claimants:
        answer = _answer(case, claim_id, owner)
        if answer is None:
            continue
        said = answer.answer + (answer.note or "") + json.dumps(answer.facts, sort_keys=True)
        if case.answered.get(claim_id) != said:
            case.answered[claim_id] = said
            answers.append(answer)
    return answers


def _answer(case: InvoiceCase, claim_id: str, owner: str | None) -> Answer | None:
    key = case.key
    if case.reversed_by is not None and case.status != PENDING:
        if claim_id == case.locked and _in_full(case):
            note = f"{case.reversed_by}: claim {claim_id}'s booking is reversed"
            return Answer(claim_id, key, REVERSE, note, None, case.facts)
        if claim_id == case.locked:
            note = (f"{case.reversed_by} in part ({case.reversal_total} of "
                    f"{(case.facts or {}).get('total')}): adjust the booking of claim {claim_id} "
                    "by hand")  # fmt: skip
            return Answer(claim_id, key, REVERSED, note, None)
        return Answer(claim_id, key, REVERSED, f"{case.reversed_by}: it supports no claim", None)
    if claim_id != owner:
        why = "booked it" if case.locked == owner else "was submitted first"
        note = (f"invoice {key} is cited by claim {claim_id} and by claim {owner}, which {why}: "
                f"it stays with {owner}")  # fmt: skip
        return Answer(claim_id, key, DUPLICATE, note, owner)
    if case.status == PENDING:
        return None
    if case.red_of is not None:
        return Answer(claim_id, key, INVALID, f"invoice {key} is a red-letter invoice offsetting "
                      f"{case.red_of}: it supports no claim", None)  # fmt: skip
    if case.status == INVALID:
        return Answer(claim_id, key, INVALID, f"invoice {key}: {'; '.join(case.problems)}", None)
    answer = GRANTED if case.locked == claim_id else VALID
    return Answer(claim_id, key, answer, None, None, case.facts)


def _in_full(case: InvoiceCase) -> bool:
    """Reversed whole: void, red-flushed, or offset by a red-letter invoice of its total."""
    blue = (case.facts or {}).get("total")
    if case.reversal_total is None or blue is None:
        return True
    return -Decimal(case.reversal_total) == Decimal(blue)
