"""One cost centre's budget for one period: how much of it is reserved and consumed, by which
claims, and which claims wait for room.

Pure logic, no Kafka. Claims are partitioned by claim id, so two claims on one cost centre are
judged by different partitions, maybe by different workers, at the same time: neither could see
the other's amount. So a claim whose claim and final approval are in *asks* the budget side to
reserve its amount (预算占用). Asks travel on the budget-requests topic keyed by budget (cost
centre and period start), so one partition judges every ask of one budget, one at a time, in the
order they came: claims judged concurrently never together exceed the budget. The budget side
counts a reservation in its table in the same transaction as its answer; the claim posts once
granted (and its invoices are in), and its posting's transaction carries the consumption
(``CONSUME``) to the budget side, so the books and the budget move together or not at all. Each
step is exactly once (Kafka transactions with the tables' changelogs), so an amount is counted
once per claim however often a worker is killed.

The rules:

- an ask is counted when the used amount (reserved and consumed) plus it stays within the budget
  (``granted``); otherwise, by the cost centre's policy, it is counted anyway and said
  (``warned``), or not counted and the claim waits in the budget's queue (``held``, with
  budget, used and asked in the note);
- one claim holds at most one share of a budget: a new ask of it (a new version, a changed
  amount) replaces what it was counted or queued with; the same ask again gets the same answer;
- a posting consumes the claim's reservation (its booked amount, counted even if the
  reservation was gone: the books have it);
- a release gives back a reservation not yet consumed (cancelled, refused, revised, moved to
  another budget), or a reversal's part of a consumption, each tag once; then, and at each tick,
  the queue is judged again in order, so held claims that fit now are granted;
- an operator's override counts a held claim although it exceeds (``overridden``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from streams.claim_case import BUDGET_GRANTS, RELEASED, TableValue
from streams.claim_case import HELD_BUDGET as HELD

COUNTED = BUDGET_GRANTS  # what the used amount includes
GRANTED, WARNED, OVERRIDDEN = COUNTED


def budget_key(cost_centre: str, start: str) -> str:
    """The key of a budget on the budget-requests topic and in the budget table."""
    return f"{cost_centre}|{start}"


@dataclass(frozen=True)
class Limit:
    """What a budget allows as the reference data says now (``amount_minor`` None: the ERP keeps
    no budget for it any more, so nothing is held) and the cost centre's policy."""

    amount_minor: int | None
    policy: Literal["hold", "warn", "off"]
    currency: str
    exponent: int
    period: str  # "2026-01-01..2026-12-31", for the notes

    def money(self, minor: int) -> str:
        return f"{Decimal(minor).scaleb(-self.exponent):,.{self.exponent}f} {self.currency}"


@dataclass(frozen=True)
class Answer:
    claim_id: str
    version: int
    amount_minor: int
    answer: str  # granted, warned, overridden or held
    note: str


@dataclass
class BudgetCase(TableValue):
    key: str
    used_minor: int = 0
    consumed_minor: int = 0  # what postings booked (less reversals); used less it: reserved
    held: list[str] = field(default_factory=list)  # claim ids waiting for room, oldest first
    claims: int = 0  # claims counted now (for the status)


@dataclass
class ClaimShare(TableValue):
    """One claim's share of one budget (table key: budget key | claim id)."""

    claim_id: str
    version: int = 0
    amount_minor: int = 0
    state: str = RELEASED
    posted: bool = False  # consumed: its posting booked amount_minor
    given_back: dict[str, int] = field(default_factory=dict)  # release tag -> minor units

    @property
    def counted_minor(self) -> int:
        """What the budget's used amount holds of this claim now."""
        return self.amount_minor - sum(self.given_back.values()) if self.state in COUNTED else 0


Shares = dict[str, ClaimShare]  # the claims this event reads or changes, by claim id


def _cost_centre(case: BudgetCase) -> str:
    return case.key.partition("|")[0]


def _note(case: BudgetCase, limit: Limit, asked: int, verdict: str) -> str:
    if limit.amount_minor is None:
        return f"cost centre {_cost_centre(case)} has no budget for {limit.period} any more"
    used, budget = case.used_minor, limit.amount_minor
    figures = (f"budget {limit.money(budget)} for {limit.period}, used {limit.money(used)}, "
               f"asked {limit.money(asked)}")  # fmt: skip
    over = used + asked - budget
    tail = f": over by {limit.money(over)}" if over > 0 else f": {limit.money(-over)} left after it"
    return f"cost centre {_cost_centre(case)} {figures}{tail} ({verdict})"


def _count(case: BudgetCase, share: ClaimShare, state: str) -> None:
    share.state, share.given_back, share.posted = state, {}, False
    case.used_minor += share.amount_minor
    case.claims += 1


def _uncount(case: BudgetCase, share: ClaimShare) -> None:
    if share.state in COUNTED:
        case.used_minor -= share.counted_minor
        case.claims -= 1
        if share.posted:
            case.consumed_minor -= share.counted_minor
    elif share.state == HELD and share.claim_id in case.held:
        case.held.remove(share.claim_id)
    share.state, share.given_back = RELEASED, {}


def _verdict(case: BudgetCase, share: ClaimShare, limit: Limit) -> str:
    fits = (limit.amount_minor is None or limit.policy == "off"
            or case.used_minor + share.amount_minor <= limit.amount_minor)  # fmt: skip
    return GRANTED if fits else WARNED if limit.policy == "warn" else HELD


def _judge(case: BudgetCase, share: ClaimShare, limit: Limit) -> Answer:
    """Count the share if it fits (or the policy lets it), else queue it."""
    state = _verdict(case, share, limit)
    note = _note(case, limit, share.amount_minor, state)
    if state == HELD:
        share.state = HELD
        if share.claim_id not in case.held:
            case.held.append(share.claim_id)
    else:
        _count(case, share, state)
    return Answer(share.claim_id, share.version, share.amount_minor, state, note)


def on_ask(case: BudgetCase, shares: Shares, claim_id: str, version: int, amount_minor: int,
           limit: Limit) -> list[Answer]:  # fmt: skip
    """A claim version asks to count ``amount_minor``. ``shares`` holds its share (if any) and
    those of the held claims."""
    share = shares.get(claim_id)
    if share is not None and share.posted:
        return []  # booked already: a late ask changes nothing
    if share is not None and share.state != RELEASED and (share.version, share.amount_minor) == (
            version, amount_minor):  # fmt: skip
        note = _note(case, limit, 0, f"{share.state}, asked again")
        return [Answer(claim_id, version, amount_minor, share.state, note)]  # said again
    if share is None:
        share = shares[claim_id] = ClaimShare(claim_id)
    _uncount(case, share)  # what an earlier version was counted or queued with
    share.version, share.amount_minor = version, amount_minor
    return [_judge(case, share, limit), *recheck(case, shares, limit, but=claim_id)]


def on_consume(case: BudgetCase, shares: Shares, claim_id: str, version: int,
               amount_minor: int) -> None:  # fmt: skip
    """The claim's posting booked ``amount_minor``: its reservation is consumed (and counted if
    it was not, or not at that amount)."""
    share = shares.get(claim_id)
    if share is not None and share.posted:
        return  # said again
    if share is None:
        share = shares[claim_id] = ClaimShare(claim_id)
    if share.state in COUNTED:
        case.used_minor += amount_minor - share.counted_minor
        share.given_back = {}
    else:
        if share.state == HELD and claim_id in case.held:
            case.held.remove(claim_id)
        _count(case, share, GRANTED)
        case.used_minor += amount_minor - share.amount_minor
    share.version, share.amount_minor, share.posted = version, amount_minor, True
    case.consumed_minor += amount_minor


def on_release(case: BudgetCase, shares: Shares, claim_id: str, tag: str,
               amount_minor: int, limit: Limit) -> list[Answer]:  # fmt: skip
    """Give back the claim's whole share (``amount_minor`` 0) or, for a reversal, that part of
    it (once per tag); then judge the queue again."""
    share = shares.get(claim_id)
    if share is None or share.state == RELEASED:
        return []
    if amount_minor:  # a reversal: of a booked claim only
        if not share.posted or share.state not in COUNTED or tag in share.given_back:
            return []
        part = min(amount_minor, share.counted_minor)
        share.given_back[tag] = part
        case.used_minor -= part
        case.consumed_minor -= part
    elif not share.posted:  # a booked claim gives back by reversals only
        _uncount(case, share)
    return recheck(case, shares, limit)


def on_override(case: BudgetCase, shares: Shares, claim_id: str, version: int, actor: str,
                reason: str, limit: Limit) -> list[Answer]:  # fmt: skip
    """An operator releases a held claim: counted although it exceeds."""
    share = shares.get(claim_id)
    if share is None or share.state != HELD or share.version != version:
        return []
    case.held.remove(claim_id)
    figures = _note(case, limit, share.amount_minor, f"released by {actor}: {reason}")
    _count(case, share, OVERRIDDEN)
    return [Answer(claim_id, version, share.amount_minor, OVERRIDDEN, figures)]


def recheck(case: BudgetCase, shares: Shares, limit: Limit, but: str = "") -> list[Answer]:
    """Grant, oldest first, the held claims that fit now (one that does not fit does not stop a
    later, smaller one). ``but``: the claim just judged."""
    answers, still = [], []
    for claim_id in case.held:
        share = shares.get(claim_id)
        if claim_id == but or share is None or share.state != HELD:
            still.append(claim_id)
            continue
        if _verdict(case, share, limit) == HELD:
            still.append(claim_id)
            continue
        answers.append(_judge(case, share, limit))
    case.held = still
    return answers
