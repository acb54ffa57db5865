"""Budgets as the processors count them, and an operator's release of a claim held over budget.

The processors keep each budget (cost centre and period) in their ``budgets`` table and each
claim's share of it in ``budget-shares`` (see :mod:`streams.budget_case`); both tables are
compacted changelog topics, read here from the start to their end. The budget amounts come
from the reference data (synced from the ERP).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from books.budget_report import BudgetLine
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer
from erpbridge.model import CURRENCY_EXPONENTS
from erpbridge.reference import BadReferenceEntry, ReferenceData
from erpbridge.topic_reader import read_all
from erpbridge.topics import Topics, table_changelog
from ops.audit import Actor, AuditTrail, new_action_id
from streams.budget_case import BudgetCase, ClaimShare


class NotHeld(Exception):
    """The claim is not held over budget (nothing to release)."""


def _latest(records: Iterable[ConsumerRecord]) -> dict[bytes, bytes]:
    """A compacted topic's current values by key (tombstones drop the key)."""
    latest: dict[bytes, bytes] = {}
    for record in records:
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = record.value
    return latest


def _table(settings: Settings, name: str) -> dict[bytes, bytes]:
    return _latest(read_all(settings, table_changelog(settings.streams_app_id, name),
                            timeout_s=60))  # fmt: skip


def reference_data(settings: Settings) -> ReferenceData:
    data = ReferenceData(rate_max_age_days=settings.rate_max_age_days)
    for key, value in _latest(read_all(settings, Topics(settings.topic_prefix).reference)).items():
        try:
            data.apply(key.decode(), value)
        except (BadReferenceEntry, ValueError):
            continue  # the processors skip it too (and say so in their log)
    return data


def budgets(settings: Settings) -> list[BudgetLine]:
    """Every budget the reference data names or the processors counted against."""
    reference = reference_data(settings)
    counted = {BudgetCase.from_json(v).key: BudgetCase.from_json(v)
               for v in _table(settings, "budgets").values()}  # fmt: skip
    keys = set(counted) | {f"{b.cost_centre}|{b.start.isoformat()}" for b in reference.budgets()}
    currency = settings.company_currency
    exponent = CURRENCY_EXPONENTS[currency]
    lines = []
    for key in sorted(keys):
        cost_centre, _, start_text = key.partition("|")
        start = datetime.date.fromisoformat(start_text)
        case = counted.get(key, BudgetCase(key))
        found = reference.budget(cost_centre, start)
        found = found if found is not None and found.start == start else None
        amount = None if found is None else int(found.amount.scaleb(exponent))
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
