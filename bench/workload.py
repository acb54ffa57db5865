"""The benches' workload: a fixed-seed, realistic mix of claims, approvals and 数电票.

Per claim: 1–5 lines, each citing a 数电票 of its own (数电专票 DIGITAL_SPECIAL or 数电普票
DIGITAL_GENERAL, at 6 %, 9 % or 13 %), approvals of 1–3 steps (the last one final), all valid so
that every claim ends as one posting. 5 % of the events are sent twice (same event id, as an
upstream retry does), and events arrive out of order within a window (an invoice after the claim
citing it, an approval before its claim). Input topics and keys are the product's.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from erpbridge.config import Settings

SEED = 20261201
KINDS = ("DIGITAL_SPECIAL", "DIGITAL_GENERAL")
RATES = (Decimal("0.06"), Decimal("0.09"), Decimal("0.13"))
CATEGORIES = (("travel", "高铁"), ("lodging", "住宿"), ("meals", "餐饮"), ("office", "办公用品"),
              ("transport", "出租车"))  # fmt: skip
DUPLICATES = 0.05
WINDOW = 40  # events shuffled within windows of this many


@dataclass(frozen=True)
class Workload:
    claims: int
    events: list[tuple[str, str, dict[str, Any]]]  # (role, key, record)

    @property
    def per_claim(self) -> float:
        return len(self.events) / self.claims


def build(claims: int, seed: int = SEED, tag: str = "B") -> Workload:
    rng = random.Random(seed)
    now = datetime.datetime.now(datetime.UTC)
    day = now.date() - datetime.timedelta(days=1)
    events: list[tuple[str, str, dict[str, Any]]] = []
    serial = 0
    for n in range(claims):
        claim_id = f"{tag}-{n:07d}"
        lines, group = [], []
        for line_no in range(1, rng.randint(1, 5) + 1):
            serial += 1
            number = f"{26 + serial % 70:02d}{serial:018d}"
            rate = rng.choice(RATES)
            net = Decimal(rng.randint(2_000, 200_000)).scaleb(-2)
            tax = (net * rate).quantize(Decimal("0.01"))
            category, text = rng.choice(CATEGORIES)
            group.append(("invoices_raw", number, invoice(number, rng.choice(KINDS), day, net,
                                                          rate, tax, now, serial)))  # fmt: skip
            lines.append({"line_no": line_no, "category": category, "description": text,
                          "amount": (net + tax).quantize(Decimal("0.0001")), "currency": "CNY",
                          "expense_date": day, "invoice_refs": [number]})  # fmt: skip
        group.append(("claims_raw", claim_id, claim(claim_id, lines, now)))
        steps = rng.randint(1, 3)
        for step in range(1, steps + 1):
            decided = now - datetime.timedelta(minutes=steps - step)  # step by step
            group.append(("approvals_raw", claim_id, approval(claim_id, step, step == steps,
                                                              decided)))  # fmt: skip
        events += group
    for n in range(len(events) - 1, -1, -1):
        if rng.random() < DUPLICATES:
            events.insert(min(len(events), n + rng.randint(1, WINDOW)), events[n])
    for start in range(0, len(events), WINDOW):
        window = events[start : start + WINDOW]
        rng.shuffle(window)
        events[start : start + WINDOW] = window
    return Workload(claims, events)


def invoice(number: str, kind: str, day: datetime.date, net: Decimal, rate: Decimal,
            tax: Decimal, now: datetime.datetime, serial: int) -> dict[str, Any]:  # fmt: skip
    return {"event_id": f"i{serial}", "source_system": "einvoice", "invoice_type": kind,
            "invoice_code": None, "invoice_number": number, "issue_date": day,
            "seller_name": "中国铁路上海局集团有限公司", "seller_tax_id": "91310000132211111P",
            "buyer_name": "ERPBridge Demo Co., Ltd.", "buyer_tax_id": None,
            "amount_net": net, "tax_rate": rate.quantize(Decimal("0.0001")), "tax_amount": tax,
            "total": net + tax, "check_code": None, "lines": [], "claim_id": None,
            "received_at": now}  # fmt: skip


def claim(claim_id: str, lines: list[dict[str, Any]], now: datetime.datetime) -> dict[str, Any]:
    return {"event_id": f"c-{claim_id}", "claim_id": claim_id, "source_system": "expense",
            "employee": {"id": "E1001", "name": "张伟", "department": "D10",
                         "cost_centre": "CC-SH-01"},
            "project": None, "purpose": None, "lines": lines, "submitted_at": now,
            "origin": {}}  # fmt: skip


def approval(claim_id: str, step: int, final: bool, now: datetime.datetime) -> dict[str, Any]:
    return {"event_id": f"a-{claim_id}-{step}", "claim_id": claim_id, "source_system": "oa",
            "step": step, "step_name": ["部门经理", "财务审核", "财务总监"][step - 1],
            "approver_id": f"E000{step}", "approver_name": "李娜", "decision": "APPROVE",
            "comment": None, "decided_at": now, "final": final}  # fmt: skip


def publish(settings: Settings, workload: Workload) -> int:
    """Every event onto the product's input topics (with the reference data the rules need);
    returns the number of input events."""
    from bench.streams_throughput import SAMPLES_DIR
    from connectors.sources.reference_file import publish_reference
    from erpbridge.contracts.bindings import TopicCodecs
    from erpbridge.kafka_io import durable_producer, ensure_topics

    ensure_topics(settings)
    for path in sorted(SAMPLES_DIR.glob("*.csv")):
        publish_reference(path, settings)
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings, linger_ms=50, batch_size=256 * 1024)
    serializers = {role: codecs.serializer(role) for role in ("invoices_raw", "claims_raw",
                                                              "approvals_raw")}  # fmt: skip
    for role, key, record in workload.events:
        producer.send(codecs.topic(role), key=key.encode(), value=serializers[role](record))
    producer.flush()
    producer.close()
    codecs.close()
    return len(workload.events)
