"""The batch-file source on the real broker: e-invoice XML and JSON Lines."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from connectors.sources.batch_file import import_file
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import ensure_topics
from erpbridge.topic_reader import read_all, read_rejections

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture
def settings(kafka_bootstrap, schema_registry_url, redis_url) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        schema_registry_url=schema_registry_url,
        redis_url=redis_url,
        topic_prefix=f"f{uuid.uuid4().hex[:10]}",
    )
    ensure_topics(settings)
    return settings


def _decoded(settings: Settings, role: str) -> list[tuple[bytes, dict]]:
    codecs = TopicCodecs(settings)
    try:
        return [(r.key, codecs.deserializer(role)(r.value))
                for r in read_all(settings, codecs.topic(role))]  # fmt: skip
    finally:
        codecs.close()


def test_einvoice_xml_is_published_and_a_bad_invoice_rejected(settings) -> None:
    source = f"xml-{uuid.uuid4().hex[:6]}"
    report = import_file(SAMPLES / "einvoices.xml", settings, source)
    assert (report.kind, report.rows, report.published, report.rejected) == ("invoices", 2, 1, 1)
    ((key, invoice),) = _decoded(settings, "invoices_raw")
    assert key == b"24442000000012345678"
    assert invoice["invoice_type"] == "DIGITAL_SPECIAL" and str(invoice["total"]) == "1280.00"
    assert invoice["seller_tax_id"] == "91440300708461136T"
    (rejection,) = read_rejections(settings)
    assert rejection.origin == {"file": "einvoices.xml", "entry": "2"}
    assert rejection.entity_id == "24442000000012345679"
    assert list(rejection.problems) == ["body: amount_net 100.00 + tax_amount 6.00 != total 107.00"]
    assert b"<InvoiceNumber>24442000000012345679</InvoiceNumber>" in rejection.value
    again = import_file(SAMPLES / "einvoices.xml", settings, source)
    assert (again.published, again.rejected, again.already_imported) == (0, 0, 2)
    assert again.previous_import == report.summary()
    assert "the same file was imported before" in again.summary()


def test_json_lines_of_approvals(settings, tmp_path: Path) -> None:
    lines = [{"claim_id": "C-1", "step": 1, "approver_id": "E7", "approver_name": "李娜",
              "decision": "approve", "decided_at": "2026-11-05T10:00:00+08:00", "final": False},
             {"claim_id": "C-1", "step": 2, "approver_id": "E9", "approver_name": "王强",
              "decision": "退回", "decided_at": "2026-11-06T09:00:00+08:00", "final": True},
             {"claim_id": "C-2", "step": "two", "decision": "maybe"}]  # fmt: skip
    path = tmp_path / "approvals.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    report = import_file(path, settings, f"oa-{uuid.uuid4().hex[:6]}", kind="approvals")
    assert (report.published, report.rejected) == (2, 1)
    decisions = [record["decision"] for _, record in _decoded(settings, "approvals_raw")]
    assert decisions == ["APPROVE", "RETURN"]  # one claim: one partition, in order
    (rejection,) = read_rejections(settings)
    assert rejection.origin["line"] == "3"
    assert [p.split(":")[0] for p in list(rejection.problems)] == [
        "step",
        "approver_id",
        "approver_name",
        "decision",
        "decided_at",
        "final",
    ]
