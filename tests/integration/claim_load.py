"""A claim load for the tests that kill things (issues 12 and 19): seeded claims with one- and
two-step approvals and 数电普票 citations, fed in waves so that many have inputs on both sides
of a restart or a rebalance, and the check that every claim was posted and booked exactly once.
"""

from __future__ import annotations

import datetime
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, end_offsets
from erpbridge.topic_reader import read_records, read_statuses
from erpbridge.topics import Topics
from ops.budgets import budgets
from ops.budgets import shares as budget_shares
from streams.audit import audit, render
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import Worker, posted_in_tryton, publish_budget

WAVE_GAP_S = 12.0
DRAIN_TIMEOUT_S = 480.0
SUBMITTED = datetime.datetime(2026, 11, 20, 9, 0, tzinfo=datetime.UTC)
INVOICE_TOTAL = SAMPLES["invoice"]["total"]  # a valid 数电普票 (DIGITAL_GENERAL) of 553.00
EXPENSE_DATE = datetime.date(2026, 11, 2)
BUDGETED_CENTRE = "CC-BJ-01"  # the other claims' CC-100 maps to CC-SH-01, without a budget


@dataclass
class Claim:
    claim_id: str
    amounts: list[Decimal]
    invoice: str | None  # the 数电普票 its first line cites
    records: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # wave, role
    budgeted: bool = False  # on BUDGETED_CENTRE, whose budget holds only part of its claims

    @property
    def total_minor(self) -> int:
        return int(sum(self.amounts) * 100)


def workload(rng: random.Random, run: str, count: int, waves: int,
             budgeted_share: float = 0.0) -> list[Claim]:  # fmt: skip
    """Claims with 1-2 lines, 40 % citing an invoice; half approved in two steps (a non-final
    APPROVE first); invoices a wave early or late, final approvals sometimes a wave late.
    ``budgeted_share`` of them are on :data:`BUDGETED_CENTRE`."""
    claims = []
    for n in range(count):
        claim_id = f"K{run}-{n:05d}"
        wave = rng.randrange(waves)
        invoice = f"26{run}{n:012d}" if rng.random() < 0.4 else None
        lines = 2 if rng.random() < 0.3 else 1
        amounts = [Decimal(rng.randrange(1_000, 200_000)) / 100 for _ in range(lines)]
        if invoice:
            amounts[0] = INVOICE_TOTAL
        claim = Claim(claim_id, amounts, invoice, budgeted=rng.random() < budgeted_share)
        body = dict(SAMPLES["expense_claim"], claim_id=claim_id, event_id=f"c-{claim_id}",
                    submitted_at=SUBMITTED, origin={"file": f"wave-{wave}.jsonl",
                                                    "line": str(n + 1)})  # fmt: skip
        if claim.budgeted:
            body["employee"] = dict(body["employee"], cost_centre=BUDGETED_CENTRE)
        body["lines"] = [
            dict(
                SAMPLES["expense_claim"]["lines"][0],
                line_no=i + 1,
                amount=amount.quantize(Decimal("0.0001")),
                expense_date=EXPENSE_DATE,
                invoice_refs=[invoice] if invoice and i == 0 else [],
            )  # fmt: skip
            for i, amount in enumerate(amounts)
        ]
        claim.records.append((wave, "claims_raw", body))
        decided = SUBMITTED + datetime.timedelta(hours=1)
        if rng.random() < 0.5:
            step1 = dict(SAMPLES["approval_decision"], claim_id=claim_id, step=1,
                         step_name="部门经理", final=False, decided_at=decided,
                         event_id=f"a1-{claim_id}")  # fmt: skip
            claim.records.append((max(0, wave - rng.randrange(2)), "approvals_raw", step1))
            decided += datetime.timedelta(hours=1)
        final = dict(SAMPLES["approval_decision"], claim_id=claim_id, final=True,
                     decided_at=decided, event_id=f"a2-{claim_id}")  # fmt: skip
        claim.records.append((wave + rng.randrange(2), "approvals_raw", final))
        if invoice:
            body_invoice = dict(SAMPLES["invoice"], invoice_number=invoice, claim_id=claim_id,
                                event_id=f"i-{claim_id}")  # fmt: skip
            claim.records.append((max(0, wave + rng.randrange(-1, 2)), "invoices_raw",
                                  body_invoice))  # fmt: skip
        claims.append(claim)
    return claims


def publish_budget_for(settings: Settings, claims: list[Claim], share: float = 0.5) -> Decimal:
    """Give :data:`BUDGETED_CENTRE` a budget of ``share`` of its claims' total (for the year they
    are dated in), so that claims arriving together compete for it; returns it."""
    total = sum((Decimal(c.total_minor) / 100 for c in claims if c.budgeted), Decimal(0))
    budget = (total * Decimal(str(share))).quantize(Decimal("0.01"))
    publish_budget(settings, BUDGETED_CENTRE, budget, EXPENSE_DATE.year)
    return budget


class Feeder(threading.Thread):
    """Publishes wave i at ``i * wave_gap_s`` after start, each wave shuffled and acknowledged;
    remembers when each claim's inputs went out."""

    def __init__(self, settings: Settings, claims: list[Claim], rng: random.Random,
                 wave_gap_s: float = WAVE_GAP_S) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.settings, self.claims, self.rng, self.wave_gap_s = settings, claims, rng, wave_gap_s
        self.sent_at: dict[str, list[float]] = {c.claim_id: [] for c in claims}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._feed()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _feed(self) -> None:
        codecs = TopicCodecs(self.settings)
        producer = durable_producer(self.settings)
        waves: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
        for claim in self.claims:
            for wave, role, record in claim.records:
                waves.setdefault(wave, []).append((claim.claim_id, role, record))
        start = time.monotonic()
        try:
            for wave in sorted(waves):
                time.sleep(max(0.0, start + wave * self.wave_gap_s - time.monotonic()))
                batch = waves[wave]
                self.rng.shuffle(batch)
                for claim_id, role, record in batch:
                    key = record["invoice_number"] if role == "invoices_raw" else claim_id
                    producer.send(codecs.topic(role), key=key.encode(),
                                  value=codecs.serializer(role)(record))  # fmt: skip
                producer.flush()
                now = time.monotonic()
                for claim_id, _, _ in batch:
                    self.sent_at[claim_id].append(now)
        finally:
            producer.close()
            codecs.close()


def kill(worker: Worker) -> None:
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)


def postings_of(settings: Settings) -> Counter[str]:
    return Counter(p["claim_id"] for p in read_records(settings, "postings"))


def transaction_markers(settings: Settings, committed_records: int) -> int:
    """Offsets of the postings topic that hold no committed record (transaction markers, and
    records of aborted transactions): 0 when the processors wrote it outside transactions, as a
    worker whose exactly-once wiring is undone does (measured: a consumer created before Faust's
    worker made its outputs plain sends)."""
    return sum(end_offsets(settings, Topics(settings.topic_prefix).postings).values()) - (
        committed_records
    )


def straddling(sent_at: dict[str, list[float]], moments: Iterable[float]) -> set[str]:
    """The claims with inputs sent both before and after one of ``moments``."""
    moments = list(moments)
    return {claim_id for claim_id, times in sent_at.items()
            if times and any(min(times) < at < max(times) for at in moments)}  # fmt: skip


def drain_and_check(settings: Settings, erp: Any, claims: list[Claim], workers: list[Worker],
                    seed: int, context: str, earlier: Collection[str] = (),
                    budget: Decimal | None = None) -> None:  # fmt: skip
    """Wait until every claim is booked in Tryton (or ``DRAIN_TIMEOUT_S``), then check each was
    posted (read_committed) and booked exactly once with its amount, the processors' audit found
    nothing lost, and the postings were written in transactions. ``earlier``: the claims of
    work done before on the same topics (a demo), posted at most once each too. ``context``
    names the faults in every failure message. ``budget``: that of :data:`BUDGETED_CENTRE`,
    whose claims are each booked or held over budget (see :func:`check_budget`)."""
    ids = [c.claim_id for c in claims]
    expected = {c.claim_id: c.total_minor for c in claims}
    budgeted = {c.claim_id for c in claims if c.budgeted}
    started = time.monotonic()
    booked: list[dict[str, Any]] = []
    while time.monotonic() < started + DRAIN_TIMEOUT_S:
        booked = posted_in_tryton(erp.settings, ids)
        if len(booked) + len(_held(settings, budgeted, budget)) >= len(ids):
            break
        dead = [w.name for w in workers if w.proc is not None and w.proc.poll() is not None]
        assert not dead, f"seed {seed}: {dead} exited\n" + "\n".join(w.tail() for w in workers)
        time.sleep(5)
    time.sleep(3)  # a commit interval more: nothing extra may follow
    postings = postings_of(settings)
    booked = posted_in_tryton(erp.settings, ids)
    held = _held(settings, budgeted, budget)
    drained = time.monotonic()
    report = audit(settings)  # the processors' own check: every consumed claim in the table
    print(render(report))
    markers = transaction_markers(settings, sum(postings.values()))
    in_erp = Counter(inv["reference"] for inv in booked)
    to_book = set(ids) - held
    missing_postings = sorted(to_book - set(postings))
    missing_in_erp = sorted(to_book - set(in_erp))
    held_yet_booked = sorted(held & (set(postings) | set(in_erp)))
    known = {*expected, *earlier}
    twice = {f"{where}:{k}": n for where, found in (("topic", postings), ("erp", in_erp))
             for k, n in found.items() if n > 1 or k not in known}  # fmt: skip
    cents = {inv["reference"]: int(Decimal(str(inv["total_amount"])) * 100) for inv in booked}
    wrong = {ref: n for ref, n in cents.items() if n != expected[ref]}
    print(f"seed {seed}: {len(postings)} claims posted, {len(in_erp)} booked in Tryton, "
          f"{len(held)} held over budget, {len(missing_postings)} never posted, "
          f"{len(missing_in_erp)} not booked, {len(twice)} more than once; drained in "
          f"{drained - started:.0f} s")  # fmt: skip
    assert (missing_postings, missing_in_erp, twice, wrong, held_yet_booked) == (
        [], [], {}, {}, []), (
        f"seed {seed} (replay with ERPBRIDGE_CHAOS_SEED={seed}): never posted "
        f"{len(missing_postings)} {missing_postings[:20]}, not booked {len(missing_in_erp)} "
        f"{missing_in_erp[:20]}, more than once {dict(list(twice.items())[:20])}, wrong "
        f"amounts {dict(list(wrong.items())[:20])}, held yet booked {held_yet_booked[:20]}; "
        f"{context}"
    )  # fmt: skip
    assert report.ok, f"seed {seed}: the audit found lost claims\n{render(report)}"
    assert markers > 0, f"seed {seed}: postings were written outside transactions"
    if budget is not None:
        check_budget(settings, claims, cents, held, budget, f"seed {seed}: {context}")


def _held(settings: Settings, budgeted: set[str], budget: Decimal | None) -> set[str]:
    """The budgeted claims the budget side holds over budget (none without a budget)."""
    if budget is None:
        return set()
    return {key.rpartition("|")[2] for key, share in budget_shares(settings).items()
            if share.state == "held"} & budgeted  # fmt: skip


def check_budget(settings: Settings, claims: list[Claim], cents: dict[str, int], held: set[str],
                 budget: Decimal, context: str) -> None:  # fmt: skip
    """What the budget side counted is exactly what Tryton booked on the budgeted cost centre,
    never more than its budget; every claim not booked is held over budget (said in its status)
    and could not fit; the budget was binding (some claims were held, some booked)."""
    amounts = {c.claim_id: c.total_minor for c in claims if c.budgeted}
    booked = sum(cents[c] for c in amounts if c in cents)
    limit = int(budget * 100)
    (line,) = [b for b in budgets(settings) if b.cost_centre == BUDGETED_CENTRE]
    last = {s["claim_id"]: s for s in read_statuses(settings)
            if s["status"] not in ("WAITING", "REDRIVEN")}  # fmt: skip
    not_said = sorted(c for c in held if (last[c]["status"], last[c]["reason"]) not in (
        ("HELD", "over_budget"), ("STALLED", "waiting")))  # fmt: skip
    available = line.available_minor
    fits = sorted(c for c in held if available is not None and amounts[c] <= available)
    print(f"budget {budget}: {len(amounts) - len(held)} of {len(amounts)} budgeted claims booked "
          f"for {booked / 100:.2f}, {len(held)} held; the budget side counted "
          f"{line.consumed_minor / 100:.2f} consumed, {line.reserved_minor / 100:.2f} reserved, "
          f"{(available or 0) / 100:.2f} available")  # fmt: skip
    assert held and booked, f"{context}: the budget did not bind ({len(held)} held, {booked})"
    assert booked <= limit, f"{context}: booked {booked} over the budget {limit} (fen)"
    assert (line.consumed_minor, line.reserved_minor) == (booked, 0), (
        f"{context}: the budget side counted {line.consumed_minor} consumed and "
        f"{line.reserved_minor} reserved; Tryton booked {booked} (fen)")  # fmt: skip
    assert sorted(line.held) == sorted(held), f"{context}: the held queue {line.held} != {held}"
    assert (not_said, fits) == ([], []), (
        f"{context}: held without saying so {not_said[:10]}; held though they fit {fits[:10]}"
    )
