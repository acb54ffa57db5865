"""Agent: the budget side. Claims' asks and give-backs in (keyed by budget: cost centre | period
start), answers to the claim side out, in the same transaction as the budget table's change.
Rules: :mod:`streams.budget_case`."""

from __future__ import annotations

import datetime
from typing import Any

from erpbridge.failures import Stage
from erpbridge.metrics import BUDGET_HELD, BUDGET_USED, STREAM_EVENTS
from erpbridge.model import CURRENCY_EXPONENTS
from streams import budget_case
from streams.agents.outputs import decode_or_reject, serve
from streams.app import (
    budget_inputs,
    budget_shares,
    budgets,
    claim_events,
    codecs,
    reference,
    settings,
)
from streams.budget_case import Answer, BudgetCase, ClaimShare, Limit, Shares
from streams.disk_state import partition_items
from streams.table_writes import put

AGENT = "budgets"
ROLES = {codecs.topic("budget_requests"): "budget_requests"}


async def _on_event(event: Any, role: str) -> None:
    request = await decode_or_reject(AGENT, Stage.CORRELATE, role, event)
    if request is None:
        return
    STREAM_EVENTS.labels(AGENT, str(request["kind"]).lower()).inc()
    if request["kind"] == "TICK":
        await _on_tick(event)
    else:
        await _on_request(event, event.key.decode(), request)


def limit_of(key: str) -> Limit:
    """The budget as the reference data says now, and its cost centre's policy."""
    cost_centre, _, start = key.partition("|")
    currency = settings.company_currency
    exponent = CURRENCY_EXPONENTS[currency]
    policy = settings.budget_policy_for(cost_centre)
    found = reference.data.budget_from(cost_centre, datetime.date.fromisoformat(start))
    if found is None:
        return Limit(None, policy, currency, exponent, f"the period from {start}")
    return Limit(found.amount_minor(exponent), policy, currency, exponent,
                 f"{found.start}..{found.end}")  # fmt: skip


def _load(key: str, claim_ids: list[str]) -> tuple[BudgetCase, Shares, dict[str, bytes]]:
    """The budget, the shares of ``claim_ids`` and of its held claims, and those shares as
    stored (so that only the changed ones are written back)."""
    raw = budgets.get(key.encode())
    case = BudgetCase(key) if raw is None else BudgetCase.from_json(raw)
    shares: Shares = {}
    stored: dict[str, bytes] = {}
    for claim_id in dict.fromkeys([*claim_ids, *case.held]):
        value = budget_shares.get(_share_key(key, claim_id))
        if value is not None:
            shares[claim_id], stored[claim_id] = ClaimShare.from_json(value), value
    return case, shares, stored


def _share_key(key: str, claim_id: str) -> bytes:
    return f"{key}|{claim_id}".encode()


async def _on_request(event: Any, key: str, request: dict[str, Any]) -> None:
    claim_id, kind, limit = request["claim_id"], request["kind"], limit_of(key)
    case, shares, before = _load(key, [claim_id])
    if kind == "ASK":
        answers = budget_case.on_ask(case, shares, claim_id, request["version"],
                                     request["amount_minor"], limit)  # fmt: skip
    elif kind == "CONSUME":
        budget_case.on_consume(case, shares, claim_id, request["version"], request["amount_minor"])
        answers = []
    elif kind == "RELEASE":
        answers = budget_case.on_release(case, shares, claim_id, request["tag"] or "released",
                                         request["amount_minor"], limit)  # fmt: skip
    else:  # OVERRIDE
        actor, reason = request["actor"] or "?", request["note"] or ""
        answers = budget_case.on_override(case, shares, claim_id, request["version"], actor,
                                          reason, limit)  # fmt: skip
    await _apply(event, case, shares, before, answers, limit)


async def _on_tick(event: Any) -> None:
    """Judge again the held claims of every budget of this partition (the budget may have grown
    in the ERP, or the policy changed)."""
    for raw_key, value in list(partition_items(budgets, event.message.partition)):
        if value is None or not BudgetCase.from_json(value).held:
            continue
        key = raw_key.decode()
        limit = limit_of(key)
        case, shares, before = _load(key, [])
        answers = budget_case.recheck(case, shares, limit)
        if answers:
            await _apply(event, case, shares, before, answers, limit)


async def _apply(event: Any, case: BudgetCase, shares: Shares, before: dict[str, bytes],
                 answers: list[Answer], limit: Limit) -> None:  # fmt: skip
    """Store what changed, then answer the claims: all in the input partition's transaction."""
    put(budgets, event, case.key.encode(), case.to_json())
    for claim_id, share in shares.items():
        value = share.to_json()
        if before.get(claim_id) != value:
            put(budget_shares, event, _share_key(case.key, claim_id), value)
    labels = case.key.split("|", 1)
    BUDGET_USED.labels(*labels).set(case.used_minor / 10**limit.exponent)
    BUDGET_HELD.labels(*labels).set(len(case.held))
    for answer in answers:
        STREAM_EVENTS.labels(AGENT, answer.answer).inc()
        message = {"kind": "BUDGET_ANSWER", "answer": answer.answer, "note": answer.note,
                   "version": answer.version, "amount_minor": answer.amount_minor}  # fmt: skip
        await claim_events.send(key=answer.claim_id.encode(), value=message)


serve(budget_inputs, AGENT, ROLES, _on_event, after_reference=True)
