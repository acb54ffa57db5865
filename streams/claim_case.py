"""One claim's case: its content versions, its approval, its invoices, and when it may be posted.

Pure logic, no Kafka: each ``on_*`` function updates the :class:`ClaimCase` (kept per claim id
in the processors' ``claims`` table) and returns the effects the agent must send. Inputs may
arrive in any order and days apart; the rules are:

- a claim is posted once: its content is valid, its final approval is APPROVE (when approval is
  required) and every invoice it cites has arrived, passed the tax checks and was granted to it
  (see :mod:`streams.invoice_case`: once claim and approval are in, the claim says it is ready,
  and the invoice side grants each invoice to the claim submitted first among those citing it);
- an invoice of a booked claim that is reversed (a red-letter invoice of its total, or void on
  the platform) yields one reversal posting of the lines citing it; one reversed in part is
  reported for the operator to adjust by hand; a claim not yet booked is held on it;
- the same content again is a duplicate (unless it was refused: then it is judged again, since
  the reference data may have been fixed); new content is the next version; new content after
  posting is held (``changed_after_posting``), never booked twice;
- the latest decision by decision time wins; REJECT or RETURN cancels. The first version takes
  a decision whenever it came (approvals often arrive before the claim); a later version needs a
  decision made after it was submitted, and an APPROVE after a RETURN waits for the resubmitted
  version even when it arrives first, so money approved for one content is never booked for
  another;
- a claim that has to wait is reported ``WAITING`` at once, with what it waits for, and again
  whenever that changes, so no claim the processors have seen can go quiet unseen;
- a claim whose claim and final approval are in but which still waits for an invoice answer
  asks the invoice side again after ``redrive_after_ms`` (then after twice as long, and so on),
  reported ``REDRIVEN``: an answer lost on the way is given again;
- a claim still open past the deadline is reported ``STALLED`` once, with what it waits for;
- a claim whose cost centre has a budget for its date (and whose policy is not off) reserves
  its amount once its claim and final approval are in (see :mod:`streams.budget_case`): it
  posts only on a grant, and is ``HELD`` ``over_budget`` otherwise, until the budget side grants
  it (room was given back, the budget grew, an operator released it); its posting records the
  consumption on the budget-requests topic in the same transaction; a cancellation, a refusal
  or a new version gives the reservation back, a reversal its part of the consumption;
- closed cases (posted, refused, cancelled) are forgotten after the retention window.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from erpbridge.config import Settings
from streams.postings import PostingRefused

_NOT_CONTENT = {"event_id", "source_system", "submitted_at", "origin"}
# The invoice side's answers (see streams.invoice_case): valid (this claim owns it so far),
# granted (valid, and locked to this claim, which may post), invalid, duplicate (another claim
# owns it), reversed (void or offset: it supports no claim), reverse (reverse the booking).
VALID, INVALID, DUPLICATE, PENDING = "valid", "invalid", "duplicate", "pending"
GRANTED, REVERSED, REVERSE = "granted", "reversed", "reverse"
_HOLDING = (INVALID, DUPLICATE, REVERSED, REVERSE)  # answers a claim not yet booked is held on


def content_hash(claim: Mapping[str, Any]) -> str:
    """Who sent a claim, when and how (event id, source, submission time, provenance) is not
    content: the same claim from two sources, or re-sent, hashes the same."""
    content = {k: v for k, v in claim.items() if k not in _NOT_CONTENT}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# Effects: what the agent sends.
@dataclass(frozen=True)
class Post:
    posting: dict[str, Any]


@dataclass(frozen=True)
class Reject:
    reason: str
    problems: list[str]
    original: bytes | None


@dataclass(frozen=True)
class Status:
    status: str  # a ClaimState symbol
    reason: str | None
    detail: list[str]
    invoice_refs: list[str] = field(default_factory=list)
    related_claim_id: str | None = None


@dataclass(frozen=True)
class Attach:
    invoice: str
    ready: bool = False  # the claim is ready to post: grant it the invoice if it owns it


@dataclass(frozen=True)
class Detach:
    invoice: str


@dataclass(frozen=True)
class BudgetAsk:
    key: str  # the budget's (streams.budget_case.budget_key)
    version: int
    amount_minor: int


@dataclass(frozen=True)
class BudgetConsume:
    key: str
    version: int
    amount_minor: int  # what the posting books


@dataclass(frozen=True)
class BudgetRelease:
    key: str
    tag: str  # cancelled, refused, moved, or reversal:<invoice>
    amount_minor: int = 0  # 0: the whole share; else the part a reversal gives back


@dataclass(frozen=True)
class BudgetOverride:
    key: str
    version: int
    actor: str
    reason: str


BudgetEffect = BudgetAsk | BudgetConsume | BudgetRelease | BudgetOverride
Effect = Post | Reject | Status | Attach | Detach | BudgetEffect
# (claim bytes, cited invoices' VAT facts by key) -> posting, or raises PostingRefused
Build = Callable[[bytes, Mapping[str, Mapping[str, Any]]], dict[str, Any]]
# (the claim's booking, the reversed invoice's key, why) -> the reversal posting
Reverse = Callable[[dict[str, Any], str, str], dict[str, Any]]


class Budgets(Protocol):
    """Which budget a posting counts against (the processors' reference data)."""

    def any(self) -> bool:
        """Whether any budget is known at all (else no claim asks)."""

    def of(self, posting: Mapping[str, Any]) -> tuple[str, str] | None:
        """(the budget's key, what a status names it), or None: its cost centre has no budget
        for its date, or its policy is off."""


# A claim's budget state: NONE (no budget for this version), ASKED, HELD_BUDGET, one of
# BUDGET_GRANTS (the budget side's grants: the claim may post), or RELEASED (given back). The
# budget side (streams.budget_case) answers and keeps its shares in the same words.
NONE, ASKED, HELD_BUDGET, RELEASED = "none", "asked", "held", "released"
GRANTED_BUDGET = "granted"
BUDGET_GRANTS = (GRANTED_BUDGET, "warned", "overridden")


@dataclass
class Policy:
    require_approval: bool = True
    stall_after_ms: int = 3 * 24 * 3600 * 1000
    retention_ms: int = 400 * 24 * 3600 * 1000
    redrive_after_ms: int = 60 * 1000
    budget: Budgets | None = None  # None: no budget control

    @classmethod
    def from_settings(cls, config: Settings, budget: Budgets | None = None) -> Policy:
        return cls(config.streams_require_approval, int(config.streams_stall_after_s * 1000),
                   int(config.streams_retention_days * 86_400_000),
                   int(config.streams_redrive_after_s * 1000), budget)  # fmt: skip


class TableValue:
    """A case as its table holds it: its fields as one JSON object (JSON types only)."""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, value: bytes) -> Self:
        return cls(**json.loads(value))


@dataclass
class ClaimCase(TableValue):
    claim_id: str
    partition: int
    opened_ms: int
    touched_ms: int
    version: int = 0
    hash: str | None = None
    claim_b64: str | None = None  # the current version's ExpenseClaim bytes
    submitted_ms: int = 0
    refs: list[str] = field(default_factory=list)
    invoices: dict[str, list[Any]] = field(default_factory=dict)  # key -> [answer, note, claim]
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> valid one's VAT facts
    decision: str | None = None  # APPROVE_FINAL, APPROVE, REJECT, RETURN
    decided_ms: int = 0
    decided_step: int = 0  # the step of that decision: of two at one time, the later step holds
    refused: str | None = None  # the reason, while the current version cannot be posted
    cancelled_version: int = -1  # the version a RETURN/REJECT was about (0: before any claim)
    cancelled_ms: int = 0
    posted: bool = False
    stalled: bool = False
    waiting: str | None = None  # what the last WAITING status said (to say it only on change)
    redrives: int = 0  # invoice answers asked for again since the last input
    redriven_ms: int = 0
    ready_for: int = 0  # the version whose readiness the invoice side was told
    reversed: list[str] = field(default_factory=list)  # invoices whose reversal was posted
    trace: str | None = None  # the current version's traceparent: its posting continues it
    budget_key: str | None = None  # the budget asked (its share there, while not released)
    budget_version: int = 0
    budget_minor: int = 0
    budget_state: str | None = None  # for budget_version: see NONE, ASKED... above
    budget_note: str | None = None  # the budget side's last answer
    budget_label: str | None = None  # what a status names the budget asked

    @property
    def claim(self) -> bytes | None:
        return None if self.claim_b64 is None else base64.b64decode(self.claim_b64)

    @property
    def cancelled(self) -> bool:
        return self.decision in ("REJECT", "RETURN")

    @property
    def closed(self) -> bool:
        return self.posted or self.cancelled or self.refused is not None


def on_claim(case: ClaimCase | None, claim_id: str, partition: int, now_ms: int, raw: bytes,
             claim: Mapping[str, Any], refs: list[str], policy: Policy,
             build: Build) -> tuple[ClaimCase, list[Effect], str]:  # fmt: skip
    """A claim version arrived. Returns the case, the effects and the verdict (new, duplicate,
    revision, retry, changed_after_posting)."""
    if case is None:
        case = ClaimCase(claim_id, partition, opened_ms=now_ms, touched_ms=now_ms)
    case.touched_ms, case.redrives = now_ms, 0
    digest = content_hash(claim)
    submitted_ms = int(claim["submitted_at"].timestamp() * 1000)
    if case.hash == digest:
        if case.refused is None:
            # An open claim sent again asks again for the invoices still pending: a replay
            # heals a claim whose answer never came (the invoice side answers a repeat).
            pending = [] if case.closed else _pending(case)
            ready = case.ready_for == case.version
            return case, [Attach(ref, ready) for ref in pending], "duplicate"
        verdict = "retry"
    elif case.posted:
        case.hash, case.version = digest, case.version + 1
        problems = [f"claim {claim_id} changed after version {case.version - 1} was posted; this "
                    f"is version {case.version}: amend the booking in the ERP, or send it as a new "
                    "claim"]  # fmt: skip
        return (
            case,
            [
                Reject("changed_after_posting", problems, raw),
                Status("HELD", "changed_after_posting", problems),
            ],
            "changed_after_posting",
        )
    else:
        verdict = "new" if case.hash is None else "revision"
        case.hash, case.version = digest, case.version + 1
    case.claim_b64, case.submitted_ms = base64.b64encode(raw).decode(), submitted_ms
    case.refused, case.stalled, case.waiting = None, False, None  # a new version: said anew
    revised = _give_back(case, "revised")  # it asks again once it may post
    if verdict == "revision" and case.decided_ms < submitted_ms:
        case.decision, case.decided_ms = None, 0  # decided on an earlier version
    try:
        build(raw, {})  # refuse now, not when the approval comes: the submitter can fix it sooner
    except PostingRefused as exc:
        case.refused = exc.reason
        effects: list[Effect] = [*(Detach(ref) for ref in case.refs), *revised]
        case.refs, case.invoices, case.facts = [], {}, {}
        return case, [*effects, Reject(exc.reason, exc.problems, raw),
                      Status("REFUSED", exc.reason, exc.problems)], verdict  # fmt: skip
    effects, more = _retarget(case, refs), advance(case, policy, build)
    readied = {e.invoice for e in more if isinstance(e, Attach)}  # said ready: cited too
    effects = [e for e in effects if not (isinstance(e, Attach) and e.invoice in readied)]
    return case, revised + effects + more, verdict


def _pending(case: ClaimCase) -> list[str]:
    """The invoices still to be answered: not yet at all, or (once the claim said it is ready)
    not yet granted."""
    waiting = (PENDING, VALID) if case.ready_for == case.version else (PENDING,)
    return [ref for ref, (answer, _, _) in case.invoices.items() if answer in waiting]


def _retarget(case: ClaimCase, refs: list[str]) -> list[Effect]:
    effects: list[Effect] = [Detach(ref) for ref in case.refs if ref not in refs]
    effects += [Attach(ref) for ref in refs if ref not in case.refs]
    case.invoices = {ref: case.invoices.get(ref, [PENDING, None, None]) for ref in refs}
    case.facts = {ref: facts for ref, facts in case.facts.items() if ref in refs}
    case.refs = list(refs)
    return effects


def on_approval(case: ClaimCase | None, claim_id: str, partition: int, now_ms: int,
                approval: Mapping[str, Any], policy: Policy,
                build: Build) -> tuple[ClaimCase, list[Effect], str]:  # fmt: skip
    """An approval step's decision arrived. Returns the case, effects and an outcome."""
    if case is None:
        case = ClaimCase(claim_id, partition, opened_ms=now_ms, touched_ms=now_ms)
    case.touched_ms, case.redrives = now_ms, 0
    decided_ms = int(approval["decided_at"].timestamp() * 1000)
    step_no = int(approval.get("step") or 0)
    if (decided_ms, step_no) < (case.decided_ms, case.decided_step) or (
            case.version > 1 and decided_ms < case.submitted_ms):  # fmt: skip
        return case, [], "stale_decision"
    if case.posted:
        return case, [], "after_posting"
    decision = approval["decision"]
    case.decision = "APPROVE_FINAL" if decision == "APPROVE" and approval["final"] else decision
    case.decided_ms, case.decided_step = decided_ms, step_no
    if case.cancelled:
        case.cancelled_version, case.cancelled_ms = case.version, decided_ms
        case.waiting = None  # what it waits for next is said again
        reason = "rejected" if decision == "REJECT" else "returned"
        step = approval.get("step_name") or f"step {approval['step']}"
        note = f"{reason} at {step} by {approval['approver_name']} ({approval['approver_id']})"
        comment = approval.get("comment")
        status = Status("CANCELLED", reason, [f"{note}: {comment}" if comment else note])
        return case, [*_release(case), *_give_back(case, "cancelled"), status], "cancelled"
    return case, advance(case, policy, build), "recorded"


def on_invoice_answer(case: ClaimCase | None, invoice: str, answer: str, note: str | None,
                      owner: str | None, facts: dict[str, Any] | None, policy: Policy,
                      build: Build, reverse: Reverse,
                      ) -> tuple[ClaimCase | None, list[Effect]]:  # fmt: skip
    """The invoice side's answer about one invoice this claim cites (``facts``: what booking
    its VAT needs, with a valid answer)."""
    if case is None or invoice not in case.invoices:
        return case, []  # stale: the claim no longer cites it (or is gone)
    if case.posted:
        return case, _after_posting(case, invoice, answer, note, facts, build, reverse)
    if case.invoices[invoice] == [answer, note, owner] and answer in _HOLDING:
        return case, []  # said again (the claim asked again): it was held on it already
    case.invoices[invoice] = [answer, note, owner]
    if answer in (VALID, GRANTED) and facts is not None:
        case.facts[invoice] = facts
    else:
        case.facts.pop(invoice, None)
    if answer in _HOLDING:
        case.waiting = None
        reason = {DUPLICATE: "duplicate_invoice", INVALID: "invalid_invoice"}.get(
            answer, "invoice_reversed"
        )
        problems = [note or f"invoice {invoice}: {answer}"]
        return case, [Reject(reason, problems, case.claim),
                      Status("HELD", reason, problems, [invoice], owner)]  # fmt: skip
    return case, advance(case, policy, build)


def _after_posting(case: ClaimCase, invoice: str, answer: str, note: str | None,
                   facts: dict[str, Any] | None, build: Build,
                   reverse: Reverse) -> list[Effect]:  # fmt: skip
    """An answer about an invoice of a booked claim: only a reversal matters now."""
    if answer not in (REVERSE, REVERSED) or invoice in case.reversed or case.claim is None:
        return []
    case.reversed.append(invoice)
    problems = [note or f"invoice {invoice} was reversed"]
    if answer == REVERSED:  # in part: the operator adjusts the booking
        return [Reject("invoice_reversed", problems, case.claim),
                Status("REVERSED", "partial_red_letter", problems, [invoice])]  # fmt: skip
    try:
        booking = build(case.claim, {ref: case.facts[ref] for ref in case.refs
                                     if ref in case.facts})  # fmt: skip
    except PostingRefused as exc:  # the reference data changed since it was booked
        return [Reject(exc.reason, [*problems, *exc.problems], case.claim),
                Status("REVERSED", exc.reason, [*problems, *exc.problems], [invoice])]  # fmt: skip
    booking["claim_version"] = case.version
    reversal = reverse(booking, invoice, problems[0])
    given_back: list[Effect] = []
    if case.budget_key is not None and case.budget_state in BUDGET_GRANTS:  # its part of it
        given_back.append(BudgetRelease(case.budget_key, f"reversal:{invoice}",
                                        -int(reversal["total_minor"])))  # fmt: skip
    return [Post(reversal), *given_back, Status("REVERSED", None, problems, [invoice])]


def advance(case: ClaimCase, policy: Policy, build: Build) -> list[Effect]:
    """Post the claim if nothing is missing any more; else say what it waits for."""
    raw = case.claim
    if case.closed:
        return []
    effects = _ready(case, policy)
    if raw is not None and not _missing(case, policy, invoices=False, budget=False):
        try:
            effects += _reserve(case, policy, raw, build)
        except PostingRefused as exc:  # the reference data changed since the claim arrived
            return _refuse(case, raw, exc)
    missing = _missing(case, policy)
    if raw is None or missing:
        return effects + _waiting(case, missing)
    if any(answer != GRANTED for answer, _, _ in case.invoices.values()):
        return effects  # held: reported when the answer came
    try:
        posting = build(raw, {ref: case.facts[ref] for ref in case.refs if ref in case.facts})
    except PostingRefused as exc:
        return _refuse(case, raw, exc)
    posting["claim_version"] = case.version
    again = _changed_budget(case, policy, posting)
    if again:
        return effects + again
    case.posted = True
    detail = list(posting.get("vat_notes", []))
    consume: list[Effect] = []
    if case.budget_key is not None and case.budget_state in BUDGET_GRANTS:
        consume.append(BudgetConsume(case.budget_key, case.version, int(posting["total_minor"])))
        if case.budget_state != GRANTED_BUDGET and case.budget_note:
            detail.append(case.budget_note)  # booked over budget: say by how much, and who let it
    return [*effects, Post(posting), *consume, Status("POSTED", None, detail, list(case.refs))]


def _refuse(case: ClaimCase, raw: bytes, exc: PostingRefused) -> list[Effect]:
    case.refused = exc.reason
    return [*_give_back(case, "refused"), Reject(exc.reason, exc.problems, raw),
            Status("REFUSED", exc.reason, exc.problems)]  # fmt: skip


def _reserve(case: ClaimCase, policy: Policy, raw: bytes, build: Build) -> list[Effect]:
    """Claim and final approval are in: reserve its amount of its budget, once per version (the
    invoices change how its VAT is booked, not its total)."""
    if policy.budget is None or (case.budget_version == case.version
                                 and case.budget_state not in (None, RELEASED)):  # fmt: skip
        return []
    if not policy.budget.any():
        return _ask(case, None, None)
    posting = build(raw, {})
    return _ask(case, policy.budget.of(posting), posting)


def _ask(case: ClaimCase, found: tuple[str, str] | None,
         posting: Mapping[str, Any] | None) -> list[Effect]:  # fmt: skip
    if found is None or posting is None:
        effects = _give_back(case, "no_budget")
        case.budget_version, case.budget_state = case.version, NONE
        return effects
    key, label = found
    effects = _give_back(case, "moved") if case.budget_key not in (None, key) else []
    amount = int(posting["total_minor"])
    case.budget_key, case.budget_version, case.budget_minor = key, case.version, amount
    case.budget_state, case.budget_note, case.budget_label = ASKED, None, label
    return [*effects, BudgetAsk(key, case.version, amount)]


def _changed_budget(case: ClaimCase, policy: Policy, posting: Mapping[str, Any]) -> list[Effect]:
    """At posting: nothing when what was reserved still holds; else ask again (its amount in
    the company currency, its budget or its period changed since, or a budget appeared)."""
    if policy.budget is None:
        return []
    found = policy.budget.of(posting) if policy.budget.any() else None
    amount = int(posting["total_minor"])
    if found is None:
        if case.budget_state in (*BUDGET_GRANTS, NONE, None, RELEASED):
            return []
        return _ask(case, None, None)
    if (case.budget_key, case.budget_version, case.budget_minor) == (found[0], case.version,
                                                                     amount):  # fmt: skip
        if case.budget_state in BUDGET_GRANTS:
            return []
    effects = _ask(case, found, posting)
    return effects + _waiting(case, _missing(case, policy))


def _budget_missing(case: ClaimCase) -> list[str]:
    if case.budget_state == ASKED:
        return [case.budget_label or "the budget's answer"]
    if case.budget_state == HELD_BUDGET:
        return [f"room in {case.budget_label or 'the budget'} (held over budget)"]
    return []


def _give_back(case: ClaimCase, tag: str) -> list[Effect]:
    """The claim lets go of its reservation (counted or queued) of the budget it asked."""
    if case.budget_key is None or case.budget_state not in (ASKED, HELD_BUDGET, *BUDGET_GRANTS):
        return []
    case.budget_state = RELEASED
    return [BudgetRelease(case.budget_key, tag)]


def on_budget_answer(case: ClaimCase | None, version: int, amount_minor: int, answer: str,
                     note: str, policy: Policy, build: Build,
                     ) -> tuple[ClaimCase | None, list[Effect]]:  # fmt: skip
    """The budget side's answer to this claim's ask: post on a grant, else say it is held."""
    if (case is None or case.closed or case.budget_state not in (ASKED, HELD_BUDGET)
            or (version, amount_minor) != (case.budget_version, case.budget_minor)):  # fmt: skip
        return case, []  # about an ask since replaced, or given back
    case.budget_note = note
    if answer == HELD_BUDGET:
        if case.budget_state == HELD_BUDGET:
            return case, []  # said already
        case.budget_state, case.waiting = HELD_BUDGET, None
        return case, [Status("HELD", "over_budget", [note])]
    case.budget_state = answer
    return case, advance(case, policy, build)


def on_budget_release(case: ClaimCase | None, actor: str,
                      reason: str) -> tuple[ClaimCase | None, list[Effect]]:  # fmt: skip
    """An operator releases this claim, held over budget: the budget side counts it anyway."""
    if case is None or case.closed or case.budget_state != HELD_BUDGET or not case.budget_key:
        return case, []
    return case, [BudgetOverride(case.budget_key, case.budget_version, actor, reason)]


def _ready(case: ClaimCase, policy: Policy) -> list[Effect]:
    """Claim and final approval are in: tell the invoice side, once per version, so that it
    grants the invoices this claim owns."""
    if case.ready_for == case.version or _missing(case, policy, invoices=False, budget=False):
        return []
    case.ready_for = case.version
    return [Attach(ref, ready=True) for ref, (answer, _, _) in case.invoices.items()
            if answer != GRANTED]  # fmt: skip


def _release(case: ClaimCase) -> list[Effect]:
    """Cancelled: the claim lets go of its invoices, so they go to the next claim citing them
    (a resubmitted version cites them again, as of its own submission)."""
    effects: list[Effect] = [Detach(ref) for ref in case.refs]
    case.refs, case.invoices, case.facts, case.ready_for = [], {}, {}, 0
    return effects


def complete(case: ClaimCase, policy: Policy) -> bool:
    """Open, nothing missing, every invoice granted: the case posts on its next judgement."""
    return (case.claim_b64 is not None and not case.closed and not _missing(case, policy)
            and all(answer == GRANTED for answer, _, _ in case.invoices.values()))  # fmt: skip


def _waiting(case: ClaimCase, missing: list[str]) -> list[Effect]:
    """A WAITING status, unless the last one said the same (or it is held over budget)."""
    pending, budget = _pending(case), _budget_missing(case)
    if not case.claim_b64:
        reason = "waiting_for_claim"
    elif len(missing) > len(pending) + len(budget):
        reason = ("waiting_for_resubmission" if _still_the_cancelled_version(case)
                  else "waiting_for_approval")  # fmt: skip
    elif pending:
        reason = "waiting_for_invoices"
    elif case.budget_state == HELD_BUDGET:
        return []  # said HELD when the budget side answered
    else:
        reason = "waiting_for_budget"
    said = json.dumps([reason, missing], ensure_ascii=False)
    if case.waiting == said:
        return []
    case.waiting = said
    return [Status("WAITING", reason, missing, _pending(case))]


def _missing(case: ClaimCase, policy: Policy, invoices: bool = True,
             budget: bool = True) -> list[str]:  # fmt: skip
    missing = [] if case.claim_b64 else ["the claim itself (only its approval has arrived)"]
    if policy.require_approval and case.decision != "APPROVE_FINAL":
        missing.append("the final approval" if case.decision is None
                       else "the final approval (approved so far, not finally)")  # fmt: skip
    if _still_the_cancelled_version(case):
        missing.append("a new version of the claim (this one was returned or rejected)")
    if invoices:
        missing += [f"invoice {ref}" for ref in _pending(case)]
    if budget:
        missing += _budget_missing(case)
    return missing


def _still_the_cancelled_version(case: ClaimCase) -> bool:
    """An approval may arrive before the version it approves: after a RETURN, an APPROVE is for
    the resubmission, never for the version that was sent back."""
    if case.cancelled_version > 0:
        return case.version <= case.cancelled_version
    return case.cancelled_version == 0 and case.submitted_ms <= case.cancelled_ms


def on_tick(case: ClaimCase, now_ms: int, policy: Policy,
            build: Build) -> tuple[list[Effect], bool]:  # fmt: skip
    """Deadlines: (effects, whether to forget the case)."""
    if case.closed:
        return [], now_ms - case.touched_ms > policy.retention_ms
    if complete(case, policy):
        return advance(case, policy, build), False  # judged again: it posts (or is refused)
    effects = _redrive(case, now_ms, policy)
    if case.stalled or now_ms - case.opened_ms <= policy.stall_after_ms:
        return effects, False
    case.stalled = True
    waiting = _missing(case, policy) or ["a blocking invoice to be resolved"]
    hours = (now_ms - case.opened_ms) / 3_600_000
    detail = [f"open for {hours:.1f} h, waiting for {item}" for item in waiting]
    pending = [ref for ref, (answer, _, _) in case.invoices.items() if answer != GRANTED]
    return [*effects, Status("STALLED", "waiting", detail, pending)], False


def _redrive(case: ClaimCase, now_ms: int, policy: Policy) -> list[Effect]:
    """Claim and final approval are in, yet no posting: after ``redrive_after_ms`` (doubling
    with each try) ask the invoice side again for the answers still pending (and the budget
    side for its answer, if it still owes one)."""
    if policy.redrive_after_ms <= 0 or case.claim_b64 is None:
        return []
    pending = _pending(case)
    asked = case.budget_state == ASKED and case.budget_key is not None
    if not (pending or asked) or len(_missing(case, policy, budget=False)) != len(pending):
        return []  # waits for something other than answers (or is held)
    since = max(case.touched_ms, case.redriven_ms)
    if now_ms - since < policy.redrive_after_ms * 2 ** min(case.redrives, 20):
        return []
    case.redrives, case.redriven_ms = case.redrives + 1, now_ms
    seconds = (now_ms - case.touched_ms) / 1000
    detail = [f"claim and final approval in for {seconds:.0f} s, no answer yet for {what}: "
              f"asked again (try {case.redrives})"
              for what in [*(f"invoice {ref}" for ref in pending),
                           *(["the budget"] if asked else [])]]  # fmt: skip
    ready = case.ready_for == case.version
    again: list[Effect] = [Attach(ref, ready) for ref in pending]
    if asked:
        again.append(BudgetAsk(str(case.budget_key), case.budget_version, case.budget_minor))
    reason = "no_invoice_answer" if pending else "no_budget_answer"
    return [*again, Status("REDRIVEN", reason, detail, pending)]
