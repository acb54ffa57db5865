"""Agent: the claim side. Claims, approvals and invoice answers in; postings, statuses,
rejections and invoice citations out. The rules are in :mod:`streams.claim_case`."""

from __future__ import annotations

import datetime
import functools
import logging
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from opentelemetry.trace import SpanKind

from erpbridge import tracing
from erpbridge.failures import Stage
from erpbridge.metrics import (
    STREAM_EVENTS,
    STREAM_OPEN_CLAIMS,
    STREAM_TABLE_KEYS,
)
from erpbridge.model import CURRENCY_EXPONENTS, invoice_ref
from streams import claim_case
from streams.agents.outputs import (
    decode_or_reject,
    event_ms,
    origin_of,
    reject,
    send_status,
    serve,
)
from streams.app import (
    app,
    budget_requests,
    claim_events,
    claim_inputs,
    claims,
    codecs,
    invoice_refs,
    postings,
    reference,
    settings,
)
from streams.budget_case import budget_key
from streams.claim_case import (
    Attach,
    BudgetAsk,
    BudgetConsume,
    BudgetEffect,
    BudgetRelease,
    ClaimCase,
    Detach,
    Effect,
    Policy,
    Post,
    Reject,
    Status,
)
from streams.disk_state import key_count, sweep_items
from streams.input_vat import NO_COMPANY_TAX_ID
from streams.open_cases import SWEEP_PER_TICK, OpenCases
from streams.postings import PostingRules, build_posting, reversal
from streams.table_writes import put

AGENT = "claims"
log = logging.getLogger(__name__)
ROLES = {codecs.topic(role): role for role in ("claims_raw", "approvals_raw", "claim_events")}


class ReferenceBudgets:
    """Budgets as the reference data has them (synced from the ERP), with each cost centre's
    policy from the settings."""

    def any(self) -> bool:
        return reference.data.has_budgets()

    def of(self, posting: Mapping[str, Any]) -> tuple[str, str] | None:
        cost_centre = posting.get("cost_centre")
        if not cost_centre or settings.budget_policy_for(cost_centre) == "off":
            return None
        found = reference.data.budget(cost_centre, posting["posting_date"])
        if found is None:
            return None
        cost_centre = cost_centre.strip().upper()
        exponent = CURRENCY_EXPONENTS[posting["currency"]]
        asked = Decimal(posting["total_minor"]).scaleb(-exponent)
        label = (f"the budget of cost centre {cost_centre} for {found.start}..{found.end} "
                 f"({asked:,.{exponent}f} {posting['currency']} asked)")  # fmt: skip
        return budget_key(cost_centre, found.start.isoformat()), label


RULES = PostingRules.from_settings(settings)
POLICY = Policy.from_settings(settings, ReferenceBudgets())


@functools.lru_cache(maxsize=1024)
def _claim(raw: bytes) -> Mapping[str, Any]:
    """A stored claim version, decoded (read only: shared between calls). A claim is decoded
    when it arrives, when it is posted and for each invoice answer's provenance; the cache
    spares all but the first two (measured: Avro decoding was 8 % of the worker's time)."""
    return codecs.deserializer("claims_raw")(raw)


def build(raw: bytes, invoices: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return build_posting(_claim(raw), RULES, reference.data, invoices)


@app.task  # type: ignore[misc]
async def _read_reference() -> None:
    """Read the reference data at start-up, not at the first event: /readyz waits for it; then
    say so when no company taxpayer id is known (no invoice's VAT can be deducted)."""
    data = await reference.ready()
    if not RULES.vat.company_tax_ids and not data.company_tax_ids():
        log.warning("no company taxpayer id is set stage=streams: %s; no input VAT is deducted "
                    "until one is (the claims still post, their VAT in the expense)",
                    NO_COMPANY_TAX_ID)  # fmt: skip


async def _on_event(event: Any, role: str) -> None:
    if role == "claim_events":
        await _on_internal(event)
        return
    STREAM_EVENTS.labels(AGENT, "in").inc()
    record = await decode_or_reject(AGENT, Stage.NORMALIZE, role, event)
    if record is not None:
        await (_on_claim if role == "claims_raw" else _on_approval)(event, record)


def _case(claim_id: str) -> ClaimCase | None:
    value = claims.get(claim_id.encode())
    return None if value is None else ClaimCase.from_json(value)


async def _on_claim(event: Any, claim: dict[str, Any]) -> None:
    claim_id = claim["claim_id"]
    refs = list(dict.fromkeys(invoice_ref(ref) for line in claim["lines"]
                              for ref in line["invoice_refs"]))  # fmt: skip
    with tracing.span("streams.claim", tracing.context_from(event.headers), SpanKind.CONSUMER,
                      claim_id=claim_id):  # fmt: skip
        case, effects, verdict = claim_case.on_claim(
            _case(claim_id), claim_id, event.message.partition, event_ms(event), event.value,
            claim, refs, POLICY, build)  # fmt: skip
        if verdict in ("duplicate", "changed_after_posting"):
            STREAM_EVENTS.labels(AGENT, verdict).inc()
        else:  # this version's posting continues this trace, whatever input completes it
            case.trace = tracing.traceparent() or case.trace
        origin = {**origin_of(event), **claim["origin"]}
        await _apply(case, effects, event, origin)


async def _on_approval(event: Any, approval: dict[str, Any]) -> None:
    claim_id = approval["claim_id"]
    case, effects, outcome = claim_case.on_approval(
        _case(claim_id), claim_id, event.message.partition, event_ms(event), approval, POLICY,
        build)  # fmt: skip
    if outcome != "recorded":
        STREAM_EVENTS.labels(AGENT, outcome).inc()
    await _apply(case, effects, event, origin_of(event))


async def _on_internal(event: Any) -> None:
    message = await decode_or_reject(AGENT, Stage.CORRELATE, "claim_events", event)
    if message is None:
        return
    if message["kind"] == "TICK":
        await _on_tick(event, message["note"] == CONTINUED)
        return
    claim_id = event.key.decode()
    if message["kind"] == "BUDGET_ANSWER":
        case, effects = claim_case.on_budget_answer(
            _case(claim_id), message["version"], message["amount_minor"], message["answer"],
            message["note"] or "", POLICY, build)  # fmt: skip
        if case is not None and effects:
            await _apply(case, effects, event, {**origin_of(event), **_provenance(case)})
        return
    if message["kind"] == "BUDGET_RELEASE":
        case, effects = claim_case.on_budget_release(_case(claim_id), message["owner"] or "?",
                                                     message["note"] or "")  # fmt: skip
        if case is not None and effects:
            await _apply(case, effects, event, origin_of(event))
        return
    case, effects = claim_case.on_invoice_answer(
        _case(claim_id), message["invoice"], message["answer"], message.get("note"),
        message.get("owner"), message.get("facts"), POLICY, build, reversal)  # fmt: skip
    if case is not None:
        await _apply(case, effects, event, {**origin_of(event), **_provenance(case)})


def _provenance(case: ClaimCase) -> dict[str, Any]:
    """Where the claim itself came from (file and line, source...), for what it causes later."""
    raw = case.claim
    return {} if raw is None else dict(_claim(raw)["origin"])


async def _apply(case: ClaimCase, effects: list[Effect], event: Any,
                 origin: dict[str, Any]) -> None:  # fmt: skip
    """Store the case, then send its effects: all in the input partition's transaction."""
    key = case.claim_id.encode()
    put(claims, event, key, case.to_json())
    OPEN_CASES.note(event.message.partition, key, not case.closed)
    at_ms = event_ms(event)
    for effect in effects:
        if isinstance(effect, Post):
            with tracing.span("streams.post", tracing.context_of_traceparent(case.trace),
                              claim_id=case.claim_id):  # fmt: skip
                await postings.send(key=key, value=effect.posting, headers=tracing.headers_of())
            STREAM_EVENTS.labels(AGENT, "out").inc()
        elif isinstance(effect, Reject):
            stage = Stage.CORRELATE if effect.reason.endswith("_invoice") else Stage.NORMALIZE
            own = event.headers if effect.original == event.value else None  # the claim's own
            await reject(AGENT, stage, key, effect.original, origin if own is not None else
                         _stored_claim_origin(origin), effect.reason, effect.problems,
                         case.claim_id, own)  # fmt: skip
        elif isinstance(effect, Status):
            if effect.status in ("HELD", "STALLED", "CANCELLED", "REDRIVEN"):
                STREAM_EVENTS.labels(AGENT, effect.status.lower()).inc()
            await send_status(case.claim_id, case.version, effect, at_ms)
        elif isinstance(effect, BudgetEffect):
            await budget_requests.send(key=effect.key.encode(), value=_budget_request(case, effect))
        elif isinstance(effect, Attach | Detach):
            kind = "UNCITE" if isinstance(effect, Detach) else "READY" if effect.ready else "CITE"
            submitted = datetime.datetime.fromtimestamp(case.submitted_ms / 1000, datetime.UTC)
            citation = {"kind": kind, "claim_id": case.claim_id, "submitted_at": submitted}
            await invoice_refs.send(key=effect.invoice.encode(), value=citation)


def _stored_claim_origin(origin: Mapping[str, Any]) -> dict[str, Any]:
    """A refusal of the claim as stored, judged while another input was handled (an approval,
    an invoice's answer): its bytes are a claim, so its origin topic is the claims topic (a
    replay sends it there), and the input that was handled is named apart."""
    handled = f"{origin.get('topic')}[{origin.get('partition')}]@{origin.get('offset')}"
    kept = {k: v for k, v in origin.items() if k not in ("topic", "partition", "offset")}
    return {**kept, "topic": codecs.topic("claims_raw"), "judged_on": handled}


def _budget_request(case: ClaimCase, effect: BudgetEffect,
                    ) -> dict[str, Any]:  # fmt: skip
    request: dict[str, Any] = {"claim_id": case.claim_id}
    if isinstance(effect, BudgetAsk):
        return {**request, "kind": "ASK", "version": effect.version,
                "amount_minor": effect.amount_minor}  # fmt: skip
    if isinstance(effect, BudgetConsume):
        return {**request, "kind": "CONSUME", "version": effect.version,
                "amount_minor": effect.amount_minor}  # fmt: skip
    if isinstance(effect, BudgetRelease):
        return {**request, "kind": "RELEASE", "tag": effect.tag,
                "amount_minor": effect.amount_minor}  # fmt: skip
    return {**request, "kind": "OVERRIDE", "version": effect.version, "actor": effect.actor,
            "note": effect.reason}  # fmt: skip


# Open claims per partition, as of its last tick; the gauge sums the partitions owned now.
_OPEN_BY_PARTITION: dict[int, dict[str, int]] = {}
OPEN_CASES = OpenCases()  # which cases a tick reads (see streams.open_cases)
CONTINUED = "continued"  # a tick's note: it goes on with its partition's round
CONTINUATION = {"kind": "TICK", "note": CONTINUED}


@app.on_partitions_revoked.connect  # type: ignore[misc]
async def _forget_open_cases(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    OPEN_CASES.forget_all()  # each partition's next tick reads its cases again


async def _on_tick(event: Any, continued: bool) -> None:
    """Deadlines for this partition's cases (stalled claims, closed cases to forget): a slice of
    its running round, or of a new one; a continuation tick when time ran out before the round's
    end (see streams.open_cases)."""
    partition, now_ms = event.message.partition, event_ms(event)
    if continued:
        OPEN_CASES.continuation_arrived(partition)
        if OPEN_CASES.running(partition) is None:
            return  # its round ended, or a rebalance forgot it: nothing to go on with
    work = OPEN_CASES.round(partition, lambda: _round_keys(partition))
    deadline = time.perf_counter() + settings.streams_tick_slice_s
    for key in work.keys:
        await _tick_case(event, partition, key, now_ms, work.counts)
        if time.perf_counter() > deadline:
            break
    else:
        OPEN_CASES.end_round(partition)
        _round_ended(event, partition, work.counts)
        return
    now = time.monotonic()
    if OPEN_CASES.continuation_due(partition, now):
        OPEN_CASES.continuation_sent(partition, now)
        STREAM_EVENTS.labels(AGENT, "tick_continued").inc()
        await claim_events.send(key=None, value=CONTINUATION, partition=partition)


async def _tick_case(event: Any, partition: int, key: bytes, now_ms: int,
                     counts: dict[str, int]) -> None:  # fmt: skip
    value = claims.get(key)  # as it is now: the round reads its keys as it goes
    if value is None:
        OPEN_CASES.note(partition, key, False)
        return
    case = ClaimCase.from_json(value)
    if case.partition != partition:
        return  # another partition's tick looks after it (in memory)
    effects, forget = claim_case.on_tick(case, now_ms, POLICY, build)
    if forget:
        put(claims, event, key, None)
        OPEN_CASES.note(partition, key, False)
        STREAM_EVENTS.labels(AGENT, "purged").inc()
        return
    if effects:
        await _apply(case, effects, event, {**origin_of(event), **_provenance(case)})
    OPEN_CASES.note(partition, key, not case.closed)
    if not case.closed:
        counts[str(case.stalled).lower()] += 1


def _round_ended(event: Any, partition: int, counts: dict[str, int]) -> None:
    """The gauges: open claims (summed over the partitions owned now) and the table's keys."""
    _OPEN_BY_PARTITION[partition] = counts
    STREAM_TABLE_KEYS.labels("claims").set(key_count(claims))
    owned = {tp.partition for tp in app.assignor.assigned_actives()
             if tp.topic == event.message.topic}  # fmt: skip
    for stalled in ("true", "false"):
        total = sum(by_state[stalled] for p, by_state in _OPEN_BY_PARTITION.items() if p in owned)
        STREAM_OPEN_CLAIMS.labels(stalled).set(total)


def _round_keys(partition: int) -> Iterator[bytes]:
    """The keys a round visits, read as it goes (a slice at a time, each from where the last
    ended, so no read spans a suspension): every case of the partition in its first round, the
    open ones noted as they are visited; later, its open cases and the retention sweep's next
    slice of the others."""
    if not OPEN_CASES.known(partition):
        OPEN_CASES.start(partition)  # writes from here on note themselves
        following: bytes | None = None
        while True:
            entries, following = sweep_items(claims, partition, following, SWEEP_PER_TICK)
            yield from [key for key, _ in entries]
            if following is None:
                return
    yield from OPEN_CASES.keys(partition)
    swept, following = sweep_items(claims, partition, OPEN_CASES.sweep_from(partition),
                                   SWEEP_PER_TICK)  # fmt: skip
    OPEN_CASES.swept_to(partition, following)
    yield from [key for key, _ in swept if not OPEN_CASES.is_open(partition, key)]


serve(claim_inputs, AGENT, ROLES, _on_event, after_reference=True)
