"""One invoice's case: has it arrived, does its tax arithmetic hold, and which claims cite it.

Pure logic, no Kafka, kept per invoice key in the processors' ``invoices`` table. The first claim
to cite an invoice owns it; every later claim citing it is answered ``duplicate`` (the same
receipt reimbursed twice), and the owner is answered ``valid`` or ``invalid`` once the invoice
is there. Answers go to the claim side only when they change. A claim that stops citing the
invoice (a new version without it) releases it, and the next claimant in line becomes owner.
Posted claims never release: the invoice stays taken for as long as the table keeps it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.claim_case import DUPLICATE, INVALID, PENDING, VALID, TableValue
from streams.invoice_checks import tax_problems, vat_facts

_NOT_CONTENT = {"event_id", "source_system", "received_at", "claim_id"}


@dataclass(frozen=True)
class Answer:
    claim_id: str
    invoice: str
    answer: str  # valid, invalid, duplicate
    note: str | None
    owner: str | None
    facts: dict[str, Any] | None = None  # for a valid answer: what booking its VAT needs


@dataclass
class InvoiceCase(TableValue):
    key: str
    partition: int
    touched_ms: int
    hash: str | None = None
    status: str = PENDING  # until the invoice itself arrives
    problems: list[str] = field(default_factory=list)
    claimants: list[str] = field(default_factory=list)  # in citing order: the first owns it
    answered: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] | None = None  # see streams.invoice_checks.vat_facts


def invoice_hash(invoice: Mapping[str, Any]) -> str:
    content = {k: v for k, v in invoice.items() if k not in _NOT_CONTENT}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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
    return case, _answers(case), case.status


def on_cited(case: InvoiceCase | None, key: str, partition: int, now_ms: int, claim_id: str,
             cited: bool) -> tuple[InvoiceCase, list[Answer]]:  # fmt: skip
    """A claim started (``cited``) or stopped citing the invoice."""
    case = case or InvoiceCase(key, partition, now_ms)
    case.touched_ms = now_ms
    if cited and claim_id in case.claimants:
        case.answered.pop(claim_id, None)  # asked again: answer again
    elif cited:
        case.claimants.append(claim_id)
    elif not cited and claim_id in case.claimants:
        case.claimants.remove(claim_id)
        case.answered.pop(claim_id, None)
    return case, _answers(case)


def _answers(case: InvoiceCase) -> list[Answer]:
    answers = []
    owner = case.claimants[0] if case.claimants else None
    for claim_id in case.claimants:
        if claim_id != owner:
            answer = Answer(
                claim_id,
                case.key,
                DUPLICATE,
                f"invoice {case.key} is already attached to claim {owner}",
                owner,
            )
        elif case.status == PENDING:
            continue
        else:
            note = "; ".join(case.problems) if case.problems else None
            answer = Answer(
                claim_id,
                case.key,
                case.status,
                f"invoice {case.key}: {note}" if note else None,
                None,
                case.facts if case.status == VALID else None,
            )
        said = answer.answer + (answer.note or "") + json.dumps(answer.facts, sort_keys=True)
        if case.answered.get(claim_id) != said:
            case.answered[claim_id] = said
            answers.append(answer)
    return answers
