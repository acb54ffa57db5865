"""One valid record per contract (latest version), realistic China-domain values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

NOW = dt.datetime(2026, 11, 23, 9, 30, 15, 123000, tzinfo=dt.UTC)

SAMPLES: dict[str, dict[str, Any]] = {
    "expense_claim": {
        "event_id": "evt-0001",
        "claim_id": "EXP-2026-0001",
        "source_system": "travel-platform",
        "employee": {
            "id": "E1001",
            "name": "张伟",
            "department": "销售部",
            "cost_centre": "CC-100",
        },
        "project": "PRJ-7",
        "purpose": "北京客户拜访",
        "lines": [
            {
                "line_no": 1,
                "category": "travel",
                "description": "高铁二等座",
                "amount": Decimal("553.0000"),
                "currency": "CNY",
                "expense_date": dt.date(2026, 11, 2),
                "invoice_refs": ["26312000000123456789"],
            }
        ],
        "submitted_at": NOW,
        "origin": {"file": "claims.csv", "line": "2"},
    },
    "approval_decision": {
        "event_id": "evt-0002",
        "claim_id": "EXP-2026-0001",
        "source_system": "oa",
        "step": 2,
        "step_name": "财务审核",
        "approver_id": "E0007",
        "approver_name": "李娜",
        "decision": "APPROVE",
        "comment": "同意",
        "decided_at": NOW,
        "final": True,
    },
    "invoice": {
        "event_id": "evt-0003",
        "source_system": "e-invoice",
        "invoice_type": "DIGITAL_GENERAL",
        "invoice_code": None,
        "invoice_number": "26312000000123456789",
        "issue_date": dt.date(2026, 11, 2),
        "seller_name": "中国铁路上海局集团有限公司",
        "seller_tax_id": "91310000132211111P",
        "buyer_name": "ERPBridge Demo Co., Ltd.",
        "buyer_tax_id": "91110108MA01ABCDEN",
        "amount_net": Decimal("507.34"),
        "tax_rate": Decimal("0.0900"),
        "tax_amount": Decimal("45.66"),
        "total": Decimal("553.00"),
        "check_code": None,
        "lines": [
            {
                "name": "*运输服务*客运服务费",
                "specification": None,
                "unit": "张",
                "quantity": Decimal("1.000000"),
                "unit_price": Decimal("507.340000"),
                "amount_net": Decimal("507.34"),
                "tax_rate": Decimal("0.0900"),
                "tax_amount": Decimal("45.66"),
            }
        ],
        "passenger": None,
        "platform_status": "NORMAL",
        "red_of": None,
        "claim_id": "EXP-2026-0001",
        "received_at": NOW,
        "origin": {"file": "einvoices.xml", "entry": "1"},
        "original_sha256": None,
    },
    "erp_posting": {
        "posting_id": "EXP-2026-0001",
        "claim_id": "EXP-2026-0001",
        "claim_version": 1,
        "source_system": "travel-platform",
        "employee_id": "E1001",
        "employee_name": "张伟",
        "cost_centre": "CC-100",
        "posting_date": dt.date(2026, 11, 2),
        "currency": "CNY",
        "lines": [
            {
                "account_code": "5.2.2",
                "description": "travel: 高铁二等座",
                "amount_minor": 55300,
                "original_amount": Decimal("553.0000"),
                "original_currency": "CNY",
                "exchange_rate": Decimal("1.00000000"),
                "invoice_refs": ["26312000000123456789"],
                "rate_date": None,
                "input_vat": [
                    {
                        "invoice_ref": "26312000000123456789",
                        "tax_rate": Decimal("0.0900"),
                        "base_minor": 50734,
                        "tax_minor": 4566,
                    }
                ],
            }
        ],
        "department": "SALES",
        "total_minor": 55300,
        "tax_minor": 4566,
        "kind": "BOOKING",
        "reverses": None,
        "vat_notes": [],
        "originals": [],
        "created_at": NOW,
    },
    "erp_feedback": {
        "claim_id": "EXP-2026-0001",
        "posting_id": "EXP-2026-0001",
        "erp": "tryton",
        "status": "BOOKED",
        "document_number": "12",
        "document_id": "12",
        "total_minor": 55300,
        "voucher_number": "记-0012",
        "message": None,
        "answered_at": NOW,
    },
    "claim_status": {
        "claim_id": "EXP-2026-0002",
        "claim_version": 1,
        "status": "HELD",
        "reason": "duplicate_invoice",
        "detail": ["invoice 26312000000123456789 is already attached to claim EXP-2026-0001"],
        "invoice_refs": ["26312000000123456789"],
        "related_claim_id": "EXP-2026-0001",
        "occurred_at": NOW,
    },
    "claim_event": {
        "kind": "INVOICE_ANSWER",
        "invoice": "26312000000123456789",
        "answer": "valid",
        "note": None,
        "owner": None,
        "facts": {
            "type": "VAT_SPECIAL",
            "buyer_tax_id": "91310000MA1FL8XQ30",
            "total": "1060.00",
            "taxes": [{"rate": "0.06", "base": "1000.00", "tax": "60.00"}],
            "traveller": None,
            "original_sha256": None,
        },
    },
    "invoice_citation": {
        "kind": "READY",
        "claim_id": "EXP-2026-0001",
        "submitted_at": NOW,
        "red_invoice": None,
        "red_total": None,
    },
    "audit_event": {
        "seq": 1,
        "action_id": "a1b2c3d4e5f60718",
        "action": "dlq.replay",
        "actor": "cli:ops",
        "role": "admin",
        "at": NOW,
        "dry_run": False,
        "selection": {"topic": "erp_dead_letter"},
        "counts": {"selected": 2, "replayed": 2},
        "outcome": "ok",
        "detail": None,
        "prev_hash": "0" * 64,
        "hash": "f" * 64,
    },
    "reconciliation_summary": {
        "run_id": "r-2026-11-30",
        "erp": "tryton",
        "period_from": dt.date(2026, 11, 29),
        "period_to": dt.date(2026, 11, 30),
        "started_at": NOW,
        "finished_at": NOW,
        "sent": 3,
        "sent_minor": 318000,
        "booked": 2,
        "booked_minor": 212000,
        "ok": False,
        "scope_checked": True,
        "counts": {"missing_in_erp": 1},
        "differences": [
            {
                "kind": "missing_in_erp",
                "reference": "P-3",
                "document": None,
                "detail": "the ERP has no document with this reference",
            }
        ],
        "truncated": False,
    },
}


# The same journey as an electronic railway ticket (电子发票（铁路电子客票）, contract v3).
RAILWAY_TICKET: dict[str, Any] = dict(
    SAMPLES["invoice"],
    invoice_type="RAILWAY_TICKET",
    passenger={
        "traveller_name": "张伟",
        "traveller_id_masked": "3101**********1234",
        "travel_date": dt.date(2026, 11, 2),
        "departure": "上海虹桥",
        "destination": "北京南",
        "carrier_number": "G2",
        "seat_class": "二等座",
        "fare": Decimal("553.00"),
        "fuel_surcharge": None,
        "development_fund": None,
        "stated_vat": None,
    },
)
