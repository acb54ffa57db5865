"""The batch-file source on the real broker: e-invoice XML and JSON Lines."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from connectors.sources.batch_file import import_file
from connectors.sources.file_formats import FileFormatError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import ensure_topics
from erpbridge.topic_reader import read_all, read_rejections
from tests.integration.pipeline import Worker, pipeline_env, wait_for

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


def test_a_stray_byte_costs_its_line_only_and_the_invoice_keeps_its_provenance(
    settings, tmp_path: Path
) -> None:
    header = "claim_id,employee_id,employee_name,expense_date,category,description,amount,currency"
    good = [f"S{n},E{n},张伟{n},2026-11-03,travel,北京出差,100,CNY" for n in range(20)]
    stray = "S99,E99,王芳,2026-11-03,travel,".encode() + "出租车".encode("gbk") + b",1,CNY"
    path = tmp_path / "mixed.csv"
    path.write_bytes("\n".join([header, *good[:10]]).encode() + b"\n" + stray + b"\n"
                     + "\n".join(good[10:]).encode() + b"\n")  # fmt: skip
    report = import_file(path, settings, f"src-{uuid.uuid4().hex[:6]}")
    assert (report.rows, report.published, report.rejected) == (21, 20, 1)
    names = {claim["employee"]["name"] for _, claim in _decoded(settings, "claims_raw")}
    assert names == {f"张伟{n}" for n in range(20)}  # read as UTF-8, not as GB18030 mojibake
    (refused,) = read_rejections(settings)
    assert refused.origin == {"file": "mixed.csv", "line": "12"} and refused.value == stray + b"\n"
    assert refused.problems[0].startswith("line: not utf-8 text")

    import_file(SAMPLES / "einvoices.xml", settings, f"inv-{uuid.uuid4().hex[:6]}")
    (_, invoice), *_ = _decoded(settings, "invoices_raw")
    assert invoice["origin"] == {"file": "einvoices.xml", "entry": "1"}  # Invoice v2


def test_a_file_refused_whole_is_recorded_with_name_size_and_checksum(
    settings, tmp_path: Path
) -> None:
    path = tmp_path / "broken.xml"
    sample = (SAMPLES / "einvoices.xml").read_bytes()
    path.write_bytes(sample[: len(sample) // 2])  # cut in the middle of the second invoice
    with pytest.raises(FileFormatError, match="not well-formed XML"):
        import_file(path, settings, f"inv-{uuid.uuid4().hex[:6]}")
    refusals = {r.reason: r for r in read_rejections(settings)}
    whole = refusals["unreadable_file"]
    assert whole.origin["file"] == "broken.xml"
    assert whole.origin["size"] == str(path.stat().st_size)
    assert len(whole.origin["sha256"]) == 64 and whole.value is None
    assert "not well-formed XML" in whole.problems[0]


def test_the_landing_folder_imports_a_complete_file_once_and_moves_it(
    settings, tmp_path: Path
) -> None:
    from connectors.sources.landing import pick_up

    landing, source = tmp_path / "landing", f"sftp-{uuid.uuid4().hex[:6]}"
    landing.mkdir()
    rows = "claim_id,employee_id,employee_name,expense_date,category,description,amount,currency\n"
    rows += "".join(f"L{n},E1001,张伟,2026-11-03,travel,出差,{n + 1}00,CNY\n" for n in range(3))
    (landing / "claims.csv").write_text(rows, encoding="utf-8")
    (landing / ".upload.csv").write_text(rows, encoding="utf-8")  # still uploading: left alone
    assert pick_up(settings, landing, source, stable_s=60).waiting == ["claims.csv"]  # too new
    (landing / "claims.csv.done").touch()  # the sender says it is complete
    first = pick_up(settings, landing, source, stable_s=60)
    assert [r.published for r in first.imported] == [3] and not first.failed
    assert sorted(p.name for p in (landing / "done").iterdir()) == ["claims.csv"]
    assert sorted(p.name for p in landing.iterdir()) == [".upload.csv", "done", "failed"]

    (landing / "claims.csv").write_text(rows, encoding="utf-8")  # the same file, again
    again = pick_up(settings, landing, source, stable_s=0)
    assert [(r.published, r.already_imported) for r in again.imported] == [(0, 3)]
    assert len(list((landing / "done").iterdir())) == 2  # kept beside the first, not over it
    (landing / "broken.xml").write_bytes(b"<EInvoice><unclosed>")
    broken = pick_up(settings, landing, source, stable_s=0)
    assert list(broken.failed) == ["broken.xml"]
    assert [p.name for p in (landing / "failed").iterdir()] == ["broken.xml"]
    assert len(_decoded(settings, "claims_raw")) == 3  # published once in all


def test_the_landing_folder_service_takes_a_dropped_file_and_stops_cleanly(
    settings, tmp_path: Path
) -> None:
    """``erpbridge source file --watch DIR`` as a long-running process: a file dropped with its
    ``.done`` marker is imported and moved while the service runs; SIGTERM stops it cleanly."""
    landing = tmp_path / "landing"
    landing.mkdir()
    service = Worker("landing", [sys.executable, "-m", "erpbridge", "source", "file", "--watch",
                                 str(landing), "--source-system", "sftp-nightly"],
                     pipeline_env(settings), tmp_path / "landing.log")  # fmt: skip
    service.start()
    try:
        rows = "claim_id,employee_id,employee_name,expense_date,category,description,amount,"
        rows += "currency\n" + "".join(f"W{n},E1001,张伟,2026-11-03,travel,出差,{n + 1}00,CNY\n"
                                       for n in range(4))  # fmt: skip
        (landing / "nightly.csv").write_text(rows, encoding="utf-8")
        (landing / "nightly.csv.done").touch()
        wait_for(lambda: (landing / "done" / "nightly.csv").exists(), timeout=60,
                 what="the file taken and moved", workers=[service])  # fmt: skip
        assert len(_decoded(settings, "claims_raw")) == 4
    finally:
        service.stop()
    assert service.proc is not None and service.proc.returncode == 0, service.tail()
    assert "nightly.csv" in service.log.read_text(encoding="utf-8")  # the run's summary
