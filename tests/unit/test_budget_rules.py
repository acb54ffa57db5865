"""Budget control without Kafka: the budget side's counting (streams.budget_case) and the claim
side's asking, holding and giving back (streams.claim_case)."""

import random

import pytest

from streams import budget_case, claim_case
from streams.budget_case import BudgetCase, ClaimShare, Limit
from streams.claim_case import (
    BudgetAsk,
    BudgetConsume,
    BudgetOverride,
    BudgetRelease,
    Policy,
    Status,
)
from tests.unit.test_correlation_rules import INVOICE, _approval, _claim, _kinds, _reverse

KEY = "CC-SH-01|2026-01-01"


def _limit(amount: int | None = 100_000, policy: str = "hold") -> Limit:
    return Limit(amount, policy, "CNY", 2, "2026-01-01..2026-12-31")  # type: ignore[arg-type]


def _ask(case, shares, claim_id, amount, version=1, limit=None):
    return budget_case.on_ask(case, shares, claim_id, version, amount, limit or _limit())


def test_asks_are_counted_while_they_fit_then_held_with_budget_used_and_asked() -> None:
    case, shares = BudgetCase(KEY), {}
    assert [a.answer for a in _ask(case, shares, "A", 60_000)] == ["granted"]
    held = _ask(case, shares, "B", 50_000)
    assert [a.answer for a in held] == ["held"] and case.held == ["B"]
    assert held[0].note == (
        "cost centre CC-SH-01 budget 1,000.00 CNY for 2026-01-01..2026-12-31, "
        "used 600.00 CNY, asked 500.00 CNY: over by 100.00 CNY (held)"
    )
    # a smaller one behind it still fits: a held claim does not block the queue
    assert [a.answer for a in _ask(case, shares, "C", 40_000)] == ["granted"]
    assert case.used_minor == 100_000 and case.claims == 2
    # the same ask again: the same answer, nothing counted twice
    again = _ask(case, shares, "A", 60_000)
    assert [a.answer for a in again] == ["granted"] and case.used_minor == 100_000


def test_a_release_gives_back_and_grants_the_held_claims_that_fit_now_oldest_first() -> None:
    case, shares = BudgetCase(KEY), {}
    _ask(case, shares, "A", 90_000)
    _ask(case, shares, "B", 30_000)
    _ask(case, shares, "C", 20_000)
    assert case.held == ["B", "C"]
    answers = budget_case.on_release(case, shares, "A", "cancelled", 0, _limit())
    assert [(a.claim_id, a.answer) for a in answers] == [("B", "granted"), ("C", "granted")]
    assert case.used_minor == 50_000 and case.held == [] and shares["A"].state == "released"
    # released twice: nothing more
    assert budget_case.on_release(case, shares, "A", "cancelled", 0, _limit()) == []
    assert case.used_minor == 50_000


def test_a_reversal_gives_back_its_part_once() -> None:
    case, shares = BudgetCase(KEY), {}
    _ask(case, shares, "A", 80_000)
    budget_case.on_release(case, shares, "A", "reversal:INV1", 30_000, _limit())
    assert case.used_minor == 80_000  # not booked yet: nothing to reverse
    budget_case.on_consume(case, shares, "A", 1, 80_000)
    budget_case.on_release(case, shares, "A", "reversal:INV1", 30_000, _limit())
    budget_case.on_release(case, shares, "A", "reversal:INV1", 30_000, _limit())
    assert case.used_minor == 50_000 and shares["A"].counted_minor == 50_000
    budget_case.on_release(case, shares, "A", "cancelled", 0, _limit())  # booked: no such thing
    assert case.used_minor == 50_000 and case.consumed_minor == 50_000


def test_a_new_version_replaces_what_the_claim_was_counted_or_queued_with() -> None:
    case, shares = BudgetCase(KEY), {}
    _ask(case, shares, "A", 70_000)
    assert [a.answer for a in _ask(case, shares, "A", 90_000, version=2)] == ["granted"]
    assert case.used_minor == 90_000 and case.claims == 1
    _ask(case, shares, "B", 20_000)
    assert case.held == ["B"]
    _ask(case, shares, "B", 10_000, version=2)  # revised down: fits now
    assert case.held == [] and case.used_minor == 100_000


def test_warn_counts_and_says_off_or_no_budget_grants() -> None:
    case, shares = BudgetCase(KEY), {}
    _ask(case, shares, "A", 90_000)
    warned = _ask(case, shares, "B", 30_000, limit=_limit(policy="warn"))
    assert warned[0].answer == "warned" and "over by 200.00 CNY" in warned[0].note
    assert case.used_minor == 120_000
    assert _ask(case, shares, "C", 1, limit=_limit(policy="off"))[0].answer == "granted"
    gone = _ask(case, shares, "D", 5, limit=_limit(amount=None))
    assert gone[0].answer == "granted" and "no budget" in gone[0].note


def test_an_operator_override_counts_a_held_claim_beyond_the_budget() -> None:
    case, shares = BudgetCase(KEY), {}
    _ask(case, shares, "A", 90_000)
    _ask(case, shares, "B", 30_000)
    assert budget_case.on_override(case, shares, "B", 2, "ops", "why", _limit()) == []  # stale
    answers = budget_case.on_override(case, shares, "B", 1, "li.na", "CFO approved", _limit())
    assert [a.answer for a in answers] == ["overridden"] and "released by li.na" in answers[0].note
    assert case.used_minor == 120_000 and case.held == []


def test_a_tick_grants_held_claims_once_the_budget_grew() -> None:
    case, shares = BudgetCase(KEY), {}
    _ask(case, shares, "A", 90_000)
    _ask(case, shares, "B", 30_000)
    assert budget_case.recheck(case, shares, _limit()) == []
    assert [a.claim_id for a in budget_case.recheck(case, shares, _limit(150_000))] == ["B"]


@pytest.mark.parametrize("seed", range(20))
def test_random_asks_and_releases_never_exceed_and_always_add_up(seed: int) -> None:
    """The invariant the budget side keeps, whatever the order: used is the sum of what the
    counted shares hold, and without an operator's override or warn it never exceeds."""
    rng = random.Random(seed)
    case, shares, limit = BudgetCase(KEY), {}, _limit(rng.randint(50_000, 200_000))
    for _ in range(200):
        claim_id = f"C{rng.randint(1, 25)}"
        roll = rng.random()
        share = shares.get(claim_id)
        if roll < 0.6:
            version = (share.version if share else 0) + rng.choice((0, 1))
            _ask(case, shares, claim_id, rng.randint(1, 40_000), max(version, 1), limit)
        elif roll < 0.7:
            budget_case.on_release(case, shares, claim_id, "cancelled", 0, limit)
        elif roll < 0.8 and share is not None and share.state == "granted":
            budget_case.on_consume(case, shares, claim_id, share.version, share.amount_minor)
        else:
            budget_case.on_release(case, shares, claim_id, f"reversal:{rng.randint(1, 3)}",
                                   rng.randint(1, 10_000), limit)  # fmt: skip
        assert case.used_minor == sum(s.counted_minor for s in shares.values())
        assert case.consumed_minor == sum(s.counted_minor for s in shares.values() if s.posted)
        assert case.used_minor <= limit.amount_minor
        assert case.held == [c for c in case.held if shares[c].state == "held"]
        assert {c for c, s in shares.items() if s.state == "held"} == set(case.held)
        if claim_id in shares:
            assert ClaimShare.from_json(shares[claim_id].to_json()) == shares[claim_id]


# The claim side

PRICE = 55_300  # what _build's posting says it totals, in fen


def _build(raw: bytes, invoices) -> dict:
    return {"claim_id": "C1", "raw": raw.decode(), "total_minor": PRICE, "invoices": {}}


class _Budgets:
    def __init__(self, known: bool = True) -> None:
        self.known = known

    def any(self) -> bool:
        return self.known

    def of(self, posting) -> tuple[str, str] | None:
        return (KEY, "the budget of cost centre CC-SH-01") if self.known else None


def _policy(budgeted: bool = True) -> Policy:
    return Policy(require_approval=True, stall_after_ms=60_000, retention_ms=3_600_000,
                  redrive_after_ms=10_000, budget=_Budgets(budgeted))  # fmt: skip


def _approved_claim(policy: Policy):
    """Claim and final approval in, its invoice not yet: it reserves its budget."""
    case, _, _ = claim_case.on_approval(None, "C1", 0, 0, _approval(), policy, _build)
    case, effects, _ = claim_case.on_claim(case, "C1", 0, 0, b"v1", _claim(), [INVOICE], policy,
                                           _build)  # fmt: skip
    return case, effects


def _invoice_granted(case, policy):
    return claim_case.on_invoice_answer(case, INVOICE, "granted", None, None, {}, policy, _build,
                                        _reverse)  # fmt: skip


def test_claim_and_final_approval_reserve_the_budget_and_the_posting_consumes_it() -> None:
    policy = _policy()
    case, effects = _approved_claim(policy)
    assert BudgetAsk(KEY, 1, PRICE) in effects  # reserved before its invoice is in
    assert effects[-1] == Status("WAITING", "waiting_for_invoices",
                                 [f"invoice {INVOICE}", "the budget of cost centre CC-SH-01"],
                                 [INVOICE])  # fmt: skip
    case, effects = _invoice_granted(case, policy)
    assert effects == [Status("WAITING", "waiting_for_budget",
                              ["the budget of cost centre CC-SH-01"])]  # fmt: skip
    # a tick meanwhile asks nothing more (until the redrive deadline)
    assert claim_case.on_tick(case, 1, policy, _build) == ([], False)
    # an answer about another amount is not this ask's
    assert claim_case.on_budget_answer(case, 1, 1, "granted", "", policy, _build)[1] == []
    case, effects = claim_case.on_budget_answer(case, 1, PRICE, "granted", "ok", policy, _build)
    assert _kinds(effects) == ["Post", "BudgetConsume", "Status:POSTED"] and case.posted
    assert effects[1] == BudgetConsume(KEY, 1, PRICE)


def test_a_budget_answer_not_given_is_asked_again_with_the_redrive() -> None:
    policy = _policy()
    case, _ = _approved_claim(policy)
    case, _ = _invoice_granted(case, policy)
    effects, _ = claim_case.on_tick(case, 20_000, policy, _build)
    assert _kinds(effects) == ["BudgetAsk", "Status:REDRIVEN"]
    assert effects[1].reason == "no_budget_answer"


def test_without_a_budget_a_claim_posts_at_once() -> None:
    policy = _policy(budgeted=False)
    case, _ = _approved_claim(policy)
    case, effects = _invoice_granted(case, policy)
    assert _kinds(effects) == ["Post", "Status:POSTED"]


def test_held_over_budget_is_said_once_and_an_operator_release_asks_the_override() -> None:
    policy = _policy()
    case, _ = _approved_claim(policy)
    case, _ = _invoice_granted(case, policy)
    note = "cost centre CC-SH-01 budget 1,000.00 CNY ..., used 900.00 CNY, asked 553.00 CNY"
    case, effects = claim_case.on_budget_answer(case, 1, PRICE, "held", note, policy, _build)
    assert effects == [Status("HELD", "over_budget", [note])]
    assert claim_case.on_budget_answer(case, 1, PRICE, "held", note, policy, _build)[1] == []
    assert claim_case.on_tick(case, 1, policy, _build) == ([], False)  # held: nothing to redrive
    # an approval said again changes nothing, and says no WAITING over the HELD
    assert claim_case.on_approval(case, "C1", 0, 0, _approval(), policy, _build)[1] == []
    case, effects = claim_case.on_budget_release(case, "li.na", "CFO approved")
    assert effects == [BudgetOverride(KEY, 1, "li.na", "CFO approved")]
    case, effects = claim_case.on_budget_answer(case, 1, PRICE, "overridden", "released by li.na",
                                                policy, _build)  # fmt: skip
    assert _kinds(effects) == ["Post", "BudgetConsume", "Status:POSTED"]
    assert "released by li.na" in effects[2].detail


def test_a_cancellation_gives_the_reservation_back_and_a_late_grant_is_ignored() -> None:
    policy = _policy()
    case, _ = _approved_claim(policy)
    case, _ = claim_case.on_budget_answer(case, 1, PRICE, "granted", "", policy, _build)
    case, effects, _ = claim_case.on_approval(case, "C1", 0, 0, _approval("RETURN", minutes=9),
                                              policy, _build)  # fmt: skip
    assert BudgetRelease(KEY, "cancelled") in effects
    case, effects = claim_case.on_budget_answer(case, 1, PRICE, "granted", "", policy, _build)
    assert effects == [] and not case.posted


def test_a_revision_gives_back_and_reserves_again_once_approved() -> None:
    policy = _policy()
    case, _ = _approved_claim(policy)
    case, effects, verdict = claim_case.on_claim(case, "C1", 0, 0, b"v2",
                                                 _claim("600.0000", minutes=10), [INVOICE],
                                                 policy, _build)  # fmt: skip
    assert verdict == "revision" and effects[0] == BudgetRelease(KEY, "revised")
    assert BudgetAsk(KEY, 2, PRICE) not in effects  # its approval was for version 1
    case, effects, _ = claim_case.on_approval(case, "C1", 0, 0, _approval(minutes=11), policy,
                                              _build)  # fmt: skip
    assert BudgetAsk(KEY, 2, PRICE) in effects


def test_a_red_letter_reversal_gives_back_its_part() -> None:
    policy = _policy()
    case, _ = _approved_claim(policy)
    case, _ = _invoice_granted(case, policy)
    case, _ = claim_case.on_budget_answer(case, 1, PRICE, "granted", "", policy, _build)
    assert case.posted

    def reverse(booking: dict, invoice: str, why: str) -> dict:
        return {"posting_id": "C1-RED", "total_minor": -PRICE}

    case, effects = claim_case.on_invoice_answer(case, INVOICE, "reverse", "red", None, None,
                                                 policy, _build, reverse)  # fmt: skip
    assert BudgetRelease(KEY, f"reversal:{INVOICE}", PRICE) in effects


def test_consumption_counts_what_was_booked_and_reversals_give_it_back() -> None:
    case, shares = BudgetCase(KEY), {}
    _ask(case, shares, "A", 60_000)
    budget_case.on_consume(case, shares, "A", 1, 61_000)  # the rate moved: booked a bit more
    budget_case.on_consume(case, shares, "A", 1, 61_000)  # said again
    assert (case.used_minor, case.consumed_minor) == (61_000, 61_000)
    assert budget_case.on_release(case, shares, "A", "cancelled", 0, _limit()) == []  # booked
    assert case.used_minor == 61_000
    budget_case.on_release(case, shares, "A", "reversal:X", 61_000, _limit())
    assert (case.used_minor, case.consumed_minor) == (0, 0)
    # a posting with no reservation (the budget appeared meanwhile) is counted all the same
    budget_case.on_consume(case, shares, "B", 1, 5_000)
    assert (case.used_minor, case.consumed_minor, case.claims) == (5_000, 5_000, 2)
