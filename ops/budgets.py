"""Budgets as the processors count them, and an operator's release of a claim held over budget.

The processors keep each budget (cost centre and period) in their ``budgets`` table and each
claim's share of it in ``budget-shares`` (see :mod:`streams.budget_case`); both tables are
compacted changelog topics, read here from the start to their end. The budget amounts come
from the reference data (synced from the ERP).
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from books.budget_report import BudgetLine
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer
from erpbridge.model import CURRENCY_EXPONENTS
from erpbridge.topic_reader import read_latest, read_reference
from erpbridge.topics import table_changelog
from ops.audit import Actor, AuditTrail, new_action_id
from streams.budget_case import BudgetCase, ClaimShare, budget_key


class NotHeld(Exception):
    """The claim is not held over budget (nothing to release)."""


def _table(settings: Settings, name: str) -> dict[bytes, bytes]:
    return read_latest(settings, table_changelog(settings.streams_app_id, name))


def budgets(settings: Settings) -> list[BudgetLine]:
    """Every budget the reference data names or the processors counted against."""
    reference = read_reference(settings)
    cases = (BudgetCase.from_json(value) for value in _table(settings, "budgets").values())
    counted = {case.key: case for case in cases}
    keys = set(counted) | {budget_key(b.cost_centre, b.start.isoformat())
                           for b in reference.budgets()}  # fmt: skip
    currency = settings.company_currency
    exponent = CURRENCY_EXPONENTS[currency]
    lines = []
    for key in sorted(keys):
        cost_centre, _, start_text = key.partition("|")
        start = datetime.date.fromisoformat(start_text)
        case = counted.get(key, BudgetCase(key))
        found = reference.budget_from(cost_centre, start)
        amount = None if found is None else found.amount_minor(exponent)
        lines.append(BudgetLine(
            cost_centre, start, found.end if found else None, found.name if found else "",
            currency, amount, case.consumed_minor, case.used_minor - case.consumed_minor,
            tuple(case.held), settings.budget_policy_for(cost_centre), case.claims))  # fmt: skip
    return lines


def shares(settings: Settings) -> dict[str, ClaimShare]:
    """Every claim's share of a budget, by ``<budget key>|<claim id>``."""
    return {key.decode(): ClaimShare.from_json(value)
            for key, value in _table(settings, "budget-shares").items()}  # fmt: skip


def held_share(settings: Settings, claim_id: str) -> tuple[str, ClaimShare]:
    """(budget key, share) of a claim held over budget; raises :class:`NotHeld`."""
    suffix = f"|{claim_id}"
    for key, share in shares(settings).items():
        if key.endswith(suffix) and share.state == "held":
            return key[: -len(suffix)], share
    raise NotHeld(f"claim {claim_id} is not held over budget")


def release(settings: Settings, claim_id: str, actor: Actor, reason: str) -> dict[str, Any]:
    """Release a claim held over budget: the processors count it although it exceeds and book
    it. Audited (``budget.release``), refused ones too."""
    reason = reason.strip()
    trail, action_id = AuditTrail(settings), new_action_id()
    selection = {"claim_id": claim_id}
    try:
        if not reason:
            raise NotHeld("say why the claim may exceed its budget (--reason)")
        key, share = held_share(settings, claim_id)
    except NotHeld as exc:
        trail.append(actor, "budget.release", action_id=action_id, selection=selection,
                     outcome="refused", detail=str(exc))  # fmt: skip
        raise
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings)
    try:
        message = {"kind": "BUDGET_RELEASE", "owner": actor.name, "note": reason}
        producer.send(codecs.topic("claim_events"), key=claim_id.encode(),
                      value=codecs.serializer("claim_events")(message)).get(timeout=30)  # fmt: skip
    finally:
        producer.close()
        codecs.close()
    exponent = CURRENCY_EXPONENTS[settings.company_currency]
    amount = Decimal(share.amount_minor).scaleb(-exponent)
    detail = f"{amount} {settings.company_currency} held over budget, released: {reason}"
    return trail.append(actor, "budget.release", action_id=action_id,
                        selection={**selection, "budget": key, "version": share.version},
                        counts={"amount_minor": share.amount_minor}, detail=detail)  # fmt: skip
