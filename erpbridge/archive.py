"""The archive of original e-invoice documents (财会〔2020〕6号: an electronic voucher may be
booked on its own only if it is kept so that tampering shows).

- Each document is stored once under its SHA-256 (``<root>/ab/abcdef…``), read-only; the
  Invoice record carries that digest (``original_sha256``), and the ERP sink attaches the
  document to the booking.
- A manifest (SQLite, ``<root>/manifest.sqlite``) lists what was archived for which invoice,
  from which source and where in it. Each entry's hash covers the entry before it, so a changed,
  inserted or deleted entry breaks the chain from there on.
- :meth:`Archive.verify` re-reads every document and the whole chain: ``erpbridge archive verify``.
  A document whose bytes no longer give its name is reported; so is a broken chain. The chain's
  head (:attr:`Verification.head`) can be copied somewhere else (an audit log, a report) to
  detect a rewrite of the whole manifest.

Readers get the bytes only after their digest was checked (:meth:`Archive.read`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

_GENESIS = "0" * 64
_SCHEMA = """create table if not exists entries (
    seq integer primary key, sha256 text not null, invoice text not null, source text not null,
    origin text not null, media_type text not null, size integer not null,
    archived_at text not null, prev text not null, hash text not null)"""


class ArchiveError(Exception):
    """A document is missing, or its bytes do not match its digest."""


@dataclass(frozen=True)
class Problem:
    where: str  # "document <sha>" or "manifest entry <seq>"
    what: str


@dataclass
class Verification:
    documents: int = 0
    entries: int = 0
    head: str = _GENESIS  # the hash of the last manifest entry
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Archive:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_of(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ArchiveError(f"{digest!r} is not a SHA-256 digest")
        return self.root / digest[:2] / digest

    def put(self, data: bytes, *, invoice: str, source: str, origin: Mapping[str, str],
            media_type: str) -> str:  # fmt: skip
        """Archive ``data`` as the original of ``invoice`` (once per document; a new manifest
        entry each time it arrives again); return its SHA-256."""
        digest = sha256_hex(data)
        path = self.path_of(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(data)
            os.chmod(partial, 0o444)
            os.replace(partial, path)  # whole or not at all
        self._record(digest, invoice, source, origin, media_type, len(data))
        return digest

    def read(self, digest: str) -> bytes:
        """The document, after checking its bytes still give its digest."""
        try:
            data = self.path_of(digest).read_bytes()
        except FileNotFoundError:
            raise ArchiveError(f"document {digest} is not in the archive") from None
        if sha256_hex(data) != digest:
            raise ArchiveError(f"document {digest} was changed: its bytes hash to "
                               f"{sha256_hex(data)}")  # fmt: skip
        return data

    def media_type(self, digest: str) -> str | None:
        with closing(self._db()) as db:
            row = db.execute("select media_type from entries where sha256 = ? limit 1",
                             (digest,)).fetchone()  # fmt: skip
            return None if row is None else str(row["media_type"])

    def entries_for(self, invoice: str) -> list[dict[str, object]]:
        with closing(self._db()) as db:
            rows = db.execute("select * from entries where invoice = ? order by seq", (invoice,))
            return [dict(row) for row in rows]

    def verify(self) -> Verification:
        result = Verification()
        prev = _GENESIS
        with closing(self._db()) as db:
            for row in db.execute("select * from entries order by seq"):
                result.entries += 1
                entry = dict(row)
                if entry["prev"] != prev or entry["hash"] != _entry_hash(entry, prev):
                    result.problems.append(Problem(f"manifest entry {entry['seq']}",
                                                   "changed, or an entry before it was changed, "
                                                   "inserted or removed"))  # fmt: skip
                prev = entry["hash"]
        result.head = prev
        listed = set(self._listed())
        for path in self._documents():
            result.documents += 1
            digest = sha256_hex(path.read_bytes())
            if digest != path.name:
                result.problems.append(Problem(f"document {path.name}",
                                               f"changed: its bytes hash to {digest}"))  # fmt: skip
            listed.discard(path.name)
        for missing in sorted(listed):
            result.problems.append(Problem(f"document {missing}", "missing"))
        return result

    # -- internals -------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.root / "manifest.sqlite", timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(_SCHEMA)
        return db

    def _record(self, digest: str, invoice: str, source: str, origin: Mapping[str, str],
                media_type: str, size: int) -> None:  # fmt: skip
        db = self._db()
        try:
            db.execute("begin immediate")  # one writer at a time extends the chain
            last = db.execute("select hash from entries order by seq desc limit 1").fetchone()
            prev = last["hash"] if last else _GENESIS
            entry = {"sha256": digest, "invoice": invoice, "source": source,
                     "origin": json.dumps(dict(origin), sort_keys=True, ensure_ascii=False),
                     "media_type": media_type, "size": size,
                     "archived_at": datetime.datetime.now(datetime.UTC).isoformat()}  # fmt: skip
            db.execute("insert into entries (sha256, invoice, source, origin, media_type, size, "
                       "archived_at, prev, hash) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*entry.values(), prev, _entry_hash(entry, prev)))  # fmt: skip
            db.execute("commit")
        except BaseException:
            db.execute("rollback")
            raise
        finally:
            db.close()

    def _listed(self) -> Iterator[str]:
        with closing(self._db()) as db:
            for row in db.execute("select distinct sha256 from entries"):
                yield row["sha256"]

    def _documents(self) -> Iterator[Path]:
        if not self.root.exists():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                yield from (p for p in sorted(folder.iterdir()) if not p.name.endswith(".partial"))


_HASHED = ("sha256", "invoice", "source", "origin", "media_type", "size", "archived_at")


def _entry_hash(entry: Mapping[str, object], prev: str) -> str:
    text = json.dumps([prev, *(entry[name] for name in _HASHED)], ensure_ascii=False)
    return sha256_hex(text.encode())
