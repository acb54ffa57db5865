"""The archive of originals: stored once by SHA-256, read only when intact, and verified whole."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from erpbridge.archive import Archive, ArchiveError, sha256_hex


def _archive(tmp_path: Path) -> tuple[Archive, str, str]:
    archive = Archive(tmp_path / "archive")
    first = archive.put(
        b"<EInvoice>1</EInvoice>",
        invoice="A1",
        source="xml",
        origin={"file": "a.xml", "entry": "1"},
        media_type="application/xml",
    )
    second = archive.put(b"%PDF-1.7 ...", invoice="B2", source="webhook",
                         origin={"request_id": "r1"}, media_type="application/pdf")  # fmt: skip
    archive.put(
        b"<EInvoice>1</EInvoice>",
        invoice="A1",
        source="xml",
        origin={"file": "a-again.xml", "entry": "1"},
        media_type="application/xml",
    )
    return archive, first, second


def test_documents_are_stored_once_by_digest_and_read_back_checked(tmp_path: Path) -> None:
    archive, first, second = _archive(tmp_path)
    assert first == sha256_hex(b"<EInvoice>1</EInvoice>")
    assert archive.read(first) == b"<EInvoice>1</EInvoice>"
    assert archive.media_type(second) == "application/pdf"
    assert [e["origin"] for e in archive.entries_for("A1")] == [
        '{"entry": "1", "file": "a.xml"}', '{"entry": "1", "file": "a-again.xml"}']  # fmt: skip
    result = archive.verify()
    assert (result.ok, result.documents, result.entries) == (True, 2, 3)
    assert not os.access(archive.path_of(first), os.W_OK) or os.geteuid() == 0  # read-only


def test_one_changed_byte_in_a_document_shows(tmp_path: Path) -> None:
    archive, first, _ = _archive(tmp_path)
    path = archive.path_of(first)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[11] ^= 0x01
    path.write_bytes(bytes(data))
    (problem,) = archive.verify().problems
    assert problem.where == f"document {first}" and problem.what.startswith("changed")
    with pytest.raises(ArchiveError, match="was changed"):
        archive.read(first)


def test_a_changed_or_removed_manifest_entry_breaks_the_chain(tmp_path: Path) -> None:
    archive, _, _ = _archive(tmp_path)
    db = sqlite3.connect(archive.root / "manifest.sqlite")
    db.execute("update entries set invoice = 'Z9' where seq = 2")
    db.commit()
    assert [p.where for p in archive.verify().problems] == ["manifest entry 2"]
    db.execute("update entries set invoice = 'B2' where seq = 2")
    db.execute("delete from entries where seq = 1")
    db.commit()
    assert [p.where for p in archive.verify().problems] == ["manifest entry 2"]  # first removed


def test_a_missing_document_shows(tmp_path: Path) -> None:
    archive, _, second = _archive(tmp_path)
    path = archive.path_of(second)
    os.chmod(path.parent, 0o755)
    path.unlink()
    assert [(p.where, p.what) for p in archive.verify().problems] == [
        (f"document {second}", "missing")]  # fmt: skip
