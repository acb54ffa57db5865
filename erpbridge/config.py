"""Typed settings, read from ``ERPBRIDGE_*`` environment variables and validated at start-up."""

from __future__ import annotations

import json
import zoneinfo
from enum import Enum
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from erpbridge.contracts.compatibility import Mode
from erpbridge.model import DEDUCTIBLE_INVOICE_TYPES, InvoiceType, valid_uscc

BudgetPolicy = Literal["hold", "warn", "off"]


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name)") from exc


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_", frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field("erpbridge", pattern=r"^[A-Za-z0-9._-]+$")
    topic_partitions: int = Field(3, ge=1)
    # copies of each topic the project creates, and how many must have a write before acks=all
    # answers (a cluster of 3: 3 and 2, so a write survives one lost broker)
    topic_replication_factor: int = Field(1, ge=1)
    topic_min_insync_replicas: int = Field(1, ge=1)
    # How every client of the project (kafka-python, aiokafka, Faust, the registry) reaches the
    # brokers: TLS (SSL, SASL_SSL) verifies the brokers against ``kafka_ssl_cafile`` (empty: the
    # system's trust store) and their host name; SASL logs in as ``kafka_sasl_username``, the
    # principal whose ACLs say what this component may read and write (erpbridge.access). A
    # client certificate and key (mutual TLS) are optional. See erpbridge.kafka_security.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""

    # Stream processors (Faust). Short timeouts make a single worker join its group in seconds.
    streams_app_id: str = "erpbridge-streams"
    streams_session_timeout_s: float = Field(6.0, gt=0)
    streams_heartbeat_interval_s: float = Field(1.0, gt=0)
    streams_rebalance_timeout_s: float = Field(2.0, gt=0)
    streams_datadir: str = ".local/faust"
    # original e-invoice documents, by SHA-256, with a hash-chained manifest (erpbridge.archive):
    # sources write it, ERP sinks attach from it; every process of a deployment shares it
    archive_dir: str = ".local/archive"
    # the runtime under the stream processors' agents: "direct", our own loop on librdkafka
    # (streams.direct: one transactional producer per worker, tables in memory, rebuilt from
    # their changelogs), or "faust" (streams.transactions, RocksDB tables, standby replicas).
    # Both read and write the same topics, changelogs and consumer group; switch with every
    # worker stopped (their group protocols differ)
    streams_runtime: Literal["direct", "faust"] = "direct"
    # where tables live: on disk (RocksDB, only committed state; a restart reads only the
    # changelog written since) or in memory (rebuilt from the whole changelog at each start)
    streams_store: Literal["rocksdb", "memory"] = "rocksdb"
    # warm copies of each table partition other workers keep, to take over without a full
    # restore (Faust's table_standby_replicas)
    streams_standby_replicas: int = Field(1, ge=0)
    # how long a starting worker waits for a broker to answer before it exits, for its
    # supervisor to start it again
    kafka_start_wait_s: float = Field(180.0, ge=0)
    # how long a starting worker waits for its input topics (created by `erpbridge topics`, a
    # compose job or a Kubernetes Job) before it exits, for its supervisor to start it again
    streams_topics_wait_s: float = Field(120.0, ge=0)
    streams_processing_guarantee: Literal["at_least_once", "exactly_once"] = "exactly_once"
    # Throughput against latency (make bench measures both): how long the producer waits to
    # fill a batch, a batch's size, and how often offsets (and, under exactly_once, each input
    # partition's transaction) commit. Outputs are visible to read_committed readers only at
    # a commit, so the commit interval bounds the added latency of exactly_once.
    streams_producer_linger_ms: float = Field(5.0, ge=0)
    streams_producer_batch_bytes: int = Field(256 * 1024, ge=1024)
    streams_commit_interval_s: float = Field(0.5, gt=0)
    streams_fetch_partition_bytes: int = Field(8 * 1024**2, ge=64 * 1024)
    # Correlation: a claim is posted once its final approval is APPROVE (unless approval is not
    # required: claims that arrive already approved) and every invoice it cites arrived valid.
    streams_require_approval: bool = True
    streams_require_employee_mapping: bool = True  # unknown employee codes are refused
    streams_stall_after_s: float = Field(3 * 24 * 3600.0, gt=0)  # then a STALLED status
    streams_tick_interval_s: float = Field(60.0, gt=0)  # how often deadlines are checked
    # the most one tick event spends on its partition's cases before it hands the rest to a
    # continuation tick, so a commit comes in between (streams.open_cases); well under the 10 s
    # transaction timeout
    streams_tick_slice_s: float = Field(0.25, gt=0, le=2.0)
    # a claim with its final approval but no invoice answer asks again after this (0: never)
    streams_redrive_after_s: float = Field(60.0, ge=0)
    streams_retention_days: float = Field(400.0, gt=0)  # closed claims are forgotten after
    rate_max_age_days: int = Field(7, ge=0)  # use the last fixing up to this many days back
    # Budget control (streams.budget_case), for cost centres with a budget in the reference data
    # (synced from the ERP): hold, a claim that would exceed its cost centre's remaining budget
    # is held over_budget until the budget grows, another claim gives back, or an operator
    # releases it; warn, it is booked and its status says by how much it exceeds; off, budgets
    # are not looked at. budget_policies: per cost centre (its ERP code), else budget_policy.
    budget_policy: BudgetPolicy = "hold"
    budget_policies: dict[str, BudgetPolicy] = Field(default_factory=dict)

    # Sink
    # the sink's consumer group; unset: <topic prefix>-sink-<writer> (one group per ERP writer,
    # so a Tryton sink and a REST sink each get every posting)
    sink_group_id: str | None = None
    sink_retry_initial_s: float = Field(0.5, gt=0)
    sink_retry_max_s: float = Field(30.0, gt=0)  # Connect: errors.retry.delay.max.ms
    # Connect's errors.tolerance: "all" dead-letters what cannot be booked and goes on; "none"
    # stops the sink at the first such record (nothing is skipped, nothing committed past it).
    sink_errors_tolerance: Literal["none", "all"] = "all"
    # Connect's errors.retry.timeout: how long one record may keep failing with retryable errors
    # before it counts as failed for good; -1 = forever (an ERP outage must not empty the topic
    # into the DLQ). Time while the circuit breaker is open does not count.
    sink_errors_retry_timeout_s: float = Field(-1.0, ge=-1)
    sink_errors_retry_max_attempts: int = Field(0, ge=0)  # 0 = no cap
    sink_breaker_threshold: int = Field(5, ge=1)  # consecutive retryable failures to open
    sink_breaker_probe_interval_s: float = Field(5.0, gt=0)
    sink_concurrency: int = Field(4, ge=1)  # bookings in flight per poll, one per claim at most
    sink_max_poll_records: int = Field(100, ge=1)
    sink_batch_size: int = Field(100, ge=1)  # postings per ERP call (when the ERP can batch)
    sink_feedback: bool = True  # publish an ErpFeedback per final outcome
    # Fault injection for tests only: exit(137) right after the Nth ERP write, before its offset
    # is committed (the crash the idempotent write must survive). 0 = off.
    sink_test_exit_after_writes: int = Field(0, ge=0)
    # The payment watcher (connectors.payment_watch): how often it asks the ERP which bookings
    # are paid
    payments_poll_s: float = Field(300.0, gt=0)
    # The master-data sync (connectors.sources.masterdata): a sync that would remove more than
    # this share of a kind's entries it published (or every one of them) stops instead
    masterdata_max_removal_share: float = Field(0.2, ge=0, le=1)
    # seconds between syncs of ``erpbridge source masterdata --every`` when not given
    masterdata_every_s: float = Field(3600.0, gt=0)
    # Tracing (erpbridge.tracing): off; otlp, spans to an OTLP/HTTP collector; file, spans as
    # JSON lines appended to tracing_file
    tracing: Literal["off", "otlp", "file"] = "off"
    tracing_otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    tracing_file: str = "spans.jsonl"

    # ERP writers have their own settings sections (connectors.erp.registry): ERPBRIDGE_ERP_*
    # for Tryton, ERPBRIDGE_REST_ERP_* for a REST gateway; the feedback webhook's are
    # ERPBRIDGE_FEEDBACK_WEBHOOK_*.

    # Postings: what the stream processor books claims as
    company_currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")
    posting_default_account: str = "5.2.2"
    posting_category_accounts: dict[str, str] = Field(default_factory=dict)
    # Input VAT the company deducts instead of expensing: VAT on invoices of these kinds, issued
    # to one of the company's taxpayer ids (统一社会信用代码): these, the single company_tax_id
    # (kept for older deployments) and the reference data's company entries. With none known,
    # nothing deducts (the buyer cannot be checked) and the stream processors say so at start.
    company_tax_id: str | None = None
    company_tax_ids: tuple[str, ...] = ()
    posting_deductible_invoice_types: tuple[InvoiceType, ...] = DEDUCTIBLE_INVOICE_TYPES

    # Event contracts and the schema registry (Confluent REST API)
    schema_compatibility: Mode = Mode.BACKWARD
    schema_registry_url: str = "http://127.0.0.1:8081"
    schema_registry_topic: str = "_erpbridge_schemas"

    # Webhook source: per-source HMAC secrets (JSON map; a source's value is one secret or, while
    # it rotates, a list of two, each accepted), replay window, idempotency memory
    webhook_secrets: dict[str, list[SecretStr]] = Field(default_factory=dict)
    webhook_max_skew_s: float = Field(300.0, gt=0)
    webhook_idempotency_ttl_s: int = Field(7 * 24 * 3600, gt=0)
    webhook_max_body_bytes: int = Field(1_000_000, gt=0)

    # Sources: the time zone a source's naive timestamps are in (IANA names), per source name
    source_time_zones: dict[str, str] = Field(default_factory=dict)
    source_default_time_zone: str = "Asia/Shanghai"

    # Redis (shared fast path for later stages)
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Prometheus: 0 picks a free port, -1 disables the endpoint
    metrics_port: int = Field(-1, ge=-1, le=65535)
    metrics_host: str = "127.0.0.1"

    # A stop (SIGTERM): how long an HTTP server (the webhook source, the ops API) lets requests
    # in flight finish before it closes them; inside the 30 s a deploy waits before SIGKILL
    shutdown_grace_s: float = Field(20.0, gt=0, le=25)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _secret_lists(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, dict):
            value = {source: [s] if isinstance(s, str | SecretStr) else s
                     for source, s in value.items()}  # fmt: skip
            for source, secrets in value.items():
                if not isinstance(secrets, list) or not 1 <= len(secrets) <= 2:
                    raise ValueError(f"webhook source {source!r}: give one secret, or two while "
                                     "rotating")  # fmt: skip
        return value

    @field_validator("source_time_zones")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        for zone in value.values():
            _zone(zone)  # an unknown zone fails at start-up
        return value

    @field_validator("source_default_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        from erpbridge.kafka_security import check

        check(self)  # a half-configured login or a missing certificate fails at start-up
        return self

    @model_validator(mode="after")
    def _replication(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(f"topic_min_insync_replicas {self.topic_min_insync_replicas} exceeds "
                             f"topic_replication_factor {self.topic_replication_factor}: no "
                             "acks=all write could succeed")  # fmt: skip
        return self

    def topic_configs(self, **more: str) -> dict[str, str]:
        """Configs of a topic the project creates: its ``min.insync.replicas``, and ``more``."""
        return {"min.insync.replicas": str(self.topic_min_insync_replicas), **more}

    def sink_group(self, writer: str) -> str:
        """The consumer group of the sink that writes with ``writer`` (tryton, rest...)."""
        return self.sink_group_id or f"{self.topic_prefix}-sink-{writer}"

    def time_zone_for(self, source: str) -> zoneinfo.ZoneInfo:
        """The zone ``source``'s naive timestamps are read in."""
        return _zone(self.source_time_zones.get(source, self.source_default_time_zone))

    @field_validator("company_tax_id")
    @classmethod
    def _uscc(cls, value: str | None) -> str | None:
        return None if value is None else _checked_uscc(value)

    @field_validator("company_tax_ids")
    @classmethod
    def _usccs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_checked_uscc(v) for v in value)

    def all_company_tax_ids(self) -> frozenset[str]:
        """The company's taxpayer ids these settings name (the reference data may add more)."""
        return frozenset(self.company_tax_ids) | (
            {self.company_tax_id} if self.company_tax_id else set())  # fmt: skip

    @field_validator("posting_category_accounts")
    @classmethod
    def _lowercase_categories(cls, value: dict[str, str]) -> dict[str, str]:
        return {key.strip().lower(): code for key, code in value.items()}

    @field_validator("budget_policies")
    @classmethod
    def _uppercase_cost_centres(cls, value: dict[str, str]) -> dict[str, str]:
        return {key.strip().upper(): policy for key, policy in value.items()}

    def budget_policy_for(self, cost_centre: str) -> BudgetPolicy:
        return self.budget_policies.get(cost_centre.strip().upper(), self.budget_policy)

    def to_env(self) -> dict[str, str]:
        """Every setting as the ``ERPBRIDGE_*`` variable it is read from (to start workers)."""
        return env_of(self)


def _checked_uscc(value: str) -> str:
    if not valid_uscc(value.strip().upper()):
        raise ValueError(f"{value!r} is not a valid unified social credit code")
    return value.strip().upper()


def env_of(settings: BaseSettings) -> dict[str, str]:
    """A settings section as the environment variables it is read from (its own prefix)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    env = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif value is None:
            continue  # unset: the worker's default is None too
        elif isinstance(value, list | tuple | frozenset | set):
            value = json.dumps(sorted(value) if isinstance(value, frozenset | set) else value)
        elif isinstance(value, dict):
            value = json.dumps({k: _reveal(v) for k, v in value.items()})
        elif isinstance(value, Enum):
            value = value.value
        env[f"{prefix}{name}".upper()] = str(value)
    return env


def _reveal(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
