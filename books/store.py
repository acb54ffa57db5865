"""The store: postings, their lines, the ERP's feedback and claim statuses, and how far each topic
partition was read, in one embedded DuckDB file (``ERPBRIDGE_BOOKS_PATH``), or in PostgreSQL when
``ERPBRIDGE_BOOKS_URL`` names one (``postgresql://user@host:port/db``): the same SQL on both.

Rows are keyed by what identifies them (posting id, claim id), so reading a topic again changes
nothing; the read position is written in the same transaction as the rows it covers, so a crash
loses neither and doubles neither. The SQL is plain (``ON CONFLICT``, no DuckDB-only syntax), the
dialect PostgreSQL speaks too; only the parameter mark differs (``?`` here, ``%s`` for psycopg),
and PostgreSQL sessions run in UTC so timestamps are stored as DuckDB stores them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BooksSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_BOOKS_", frozen=True, extra="ignore")

    path: Path = Path(".local/books.duckdb")  # ":memory:" for a throw-away store
    url: str | None = Field(None, pattern=r"^postgres(ql)?://")  # PostgreSQL instead of the file
    batch_records: int = 2000  # records per transaction while ingesting


SCHEMA = [
    """create table if not exists postings (
        posting_id varchar primary key, claim_id varchar not null, claim_version integer,
        source_system varchar, employee_id varchar, employee_name varchar, department varchar,
        cost_centre varchar, posting_date date, currency varchar, total_minor bigint,
        tax_minor bigint, created_at timestamp, src_topic varchar, src_partition integer,
        src_offset bigint)""",
    """create table if not exists posting_lines (
        posting_id varchar, line_no integer, account_code varchar, category varchar,
        description varchar, amount_minor bigint, tax_minor bigint,
        primary key (posting_id, line_no))""",
    """create table if not exists feedback (
        posting_id varchar primary key, erp varchar, status varchar, document_number varchar,
        document_id varchar, voucher_number varchar, total_minor bigint, message varchar,
        answered_at timestamp)""",
    """create table if not exists payments (
        posting_id varchar primary key, erp varchar, paid_minor bigint, paid_on date,
        payment_reference varchar, answered_at timestamp)""",
    """create table if not exists journey (
        src_topic varchar, src_partition integer, src_offset bigint, claim_id varchar,
        happened_at timestamp, stage varchar, event varchar, summary varchar, reference varchar,
        origin varchar, employee_id varchar,
        primary key (src_topic, src_partition, src_offset))""",
    "create index if not exists journey_by_claim on journey (claim_id)",
    "create index if not exists journey_by_reference on journey (reference)",
    """create table if not exists claim_status (
        claim_id varchar primary key, claim_version integer, status varchar, reason varchar,
        occurred_at timestamp)""",
    """create table if not exists progress (
        topic varchar, partition_no integer, next_offset bigint,
        primary key (topic, partition_no))""",
]

UPSERT = {
    "postings": """insert into postings values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        on conflict (posting_id) do update set claim_id = excluded.claim_id,
        claim_version = excluded.claim_version, source_system = excluded.source_system,
        employee_id = excluded.employee_id, employee_name = excluded.employee_name,
        department = excluded.department, cost_centre = excluded.cost_centre,
        posting_date = excluded.posting_date, currency = excluded.currency,
        total_minor = excluded.total_minor, tax_minor = excluded.tax_minor,
        created_at = excluded.created_at, src_topic = excluded.src_topic,
        src_partition = excluded.src_partition, src_offset = excluded.src_offset""",
    "posting_lines": """insert into posting_lines values (?, ?, ?, ?, ?, ?, ?)
        on conflict (posting_id, line_no) do update set account_code = excluded.account_code,
        category = excluded.category, description = excluded.description,
        amount_minor = excluded.amount_minor, tax_minor = excluded.tax_minor""",
    "feedback": """insert into feedback values (?, ?, ?, ?, ?, ?, ?, ?, ?)
        on conflict (posting_id) do update set erp = excluded.erp, status = excluded.status,
        document_number = excluded.document_number, document_id = excluded.document_id,
        voucher_number = excluded.voucher_number, total_minor = excluded.total_minor,
        message = excluded.message, answered_at = excluded.answered_at
        where excluded.answered_at >= feedback.answered_at""",
    "payments": """insert into payments values (?, ?, ?, ?, ?, ?)
        on conflict (posting_id) do update set erp = excluded.erp,
        paid_minor = excluded.paid_minor, paid_on = excluded.paid_on,
        payment_reference = excluded.payment_reference, answered_at = excluded.answered_at
        where excluded.answered_at >= payments.answered_at""",
    "journey": """insert into journey values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        on conflict (src_topic, src_partition, src_offset) do nothing""",
    "claim_status": """insert into claim_status values (?, ?, ?, ?, ?)
        on conflict (claim_id) do update set claim_version = excluded.claim_version,
        status = excluded.status, reason = excluded.reason, occurred_at = excluded.occurred_at
        where excluded.occurred_at >= claim_status.occurred_at""",
    "progress": """insert into progress values (?, ?, ?)
        on conflict (topic, partition_no) do update set next_offset = excluded.next_offset""",
}


# What identifies a row of each table (its key columns), and for the tables where the newest answer
# wins, the column that says which is newest: a batch is cut down to one row per key before it is
# written (one statement may not update a row twice).
KEYS: dict[str, tuple[tuple[int, ...], int | None]] = {
    "postings": ((0,), None), "posting_lines": ((0, 1), None), "feedback": ((0,), 8),
    "payments": ((0,), 5), "journey": ((0, 1, 2), None), "claim_status": ((0,), 4),
    "progress": ((0, 1), None)}  # fmt: skip


def newest_per_key(table: str, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """One row per key: the last, or where the table says so the newest (the last of equals)."""
    key_columns, newest = KEYS[table]
    kept: dict[tuple[Any, ...], Sequence[Any]] = {}
    for row in rows:
        key = tuple(row[c] for c in key_columns)
        before = kept.get(key)
        if before is None or newest is None or row[newest] >= before[newest]:
            kept[key] = row
    return list(kept.values())


def _columnar(sql: str) -> str:
    """``insert ... values (?, ...)`` as ``insert ... select unnest(?), ...``: one list per
    column (DuckDB binds a list in one go; a row at a time it stores a few hundred rows/s)."""
    marks = re.search(r"values \(([?, ]+)\)", sql)
    assert marks is not None, sql
    count = marks.group(1).count("?")
    return sql.replace(marks.group(0), "select " + ", ".join(["unnest(?)"] * count))


COLUMNAR = {table: _columnar(sql) for table, sql in UPSERT.items()}


class Store:
    def __init__(self, config: BooksSettings) -> None:
        self.db: Any
        if config.url:
            try:
                import psycopg
            except ImportError:
                why = "ERPBRIDGE_BOOKS_URL names PostgreSQL, and psycopg is not installed"
                raise RuntimeError(f"{why}: pip install 'erpbridge[postgres]'") from None

            self.engine = "postgresql"
            self.db = psycopg.connect(config.url, autocommit=True)
            self.db.execute("set time zone 'UTC'")
        else:
            self.engine = "duckdb"
            path = str(config.path)
            if path != ":memory:":
                config.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = duckdb.connect(path)
        for statement in SCHEMA:
            self.db.execute(statement)

    def close(self) -> None:
        self.db.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.engine == "postgresql" else sql

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        self.db.execute("begin transaction")
        try:
            yield self
        except BaseException:
            self.db.execute("rollback")
            raise
        self.db.execute("commit")

    def upsert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        rows = newest_per_key(table, rows)
        if not rows:
            return
        if self.engine == "postgresql":
            with self.db.cursor() as cursor:
                cursor.executemany(self._sql(UPSERT[table]), [list(row) for row in rows])
        else:
            self.db.execute(COLUMNAR[table], [list(column) for column in zip(*rows, strict=True)])

    def positions(self, topic: str) -> dict[int, int]:
        found = self.query(
            "select partition_no, next_offset from progress where topic = ?", [topic]
        )
        return {int(partition): int(offset) for partition, offset in found}

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.db.execute(self._sql(sql), list(params)).fetchall()]
