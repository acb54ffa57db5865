"""The app, its topics and tables. Agents live in :mod:`streams.agents`.

The app is the runtime ``ERPBRIDGE_STREAMS_RUNTIME`` names: the direct one
(:class:`streams.direct.DirectApp`, the default) or Faust (:func:`build_app`). Both take the
same declarations. Start a worker with ``erpbridge streams``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erpbridge.config import Settings, get_settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.contracts.faust_codec import AvroCodec
from erpbridge.kafka_security import client_options, faust_credentials
from streams import disk_state
from streams.direct import DirectApp
from streams.recovery import CheckedTableManager
from streams.reference_view import ReferenceView
from streams.transactions import App


def build_app(settings: Settings) -> App:
    Path(settings.streams_datadir).mkdir(parents=True, exist_ok=True)
    return App(
        settings.streams_app_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store=f"{disk_state.ALIAS}://" if settings.streams_store == "rocksdb" else "memory://",
        datadir=f"{settings.streams_datadir}/{settings.streams_app_id}",
        topic_partitions=settings.topic_partitions,
        table_standby_replicas=settings.streams_standby_replicas,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.streams_session_timeout_s,
        broker_heartbeat_interval=settings.streams_heartbeat_interval_s,
        broker_rebalance_timeout=settings.streams_rebalance_timeout_s,
        producer_acks=-1,
        producer_linger=settings.streams_producer_linger_ms / 1000,
        producer_max_batch_size=settings.streams_producer_batch_bytes,
        broker_commit_interval=settings.streams_commit_interval_s,
        # a fetch brings up to this much of each partition: table recovery reads changelogs at
        # the pace of fetch round trips (measured: 1 MiB, Faust's default, 3,600 cases/s)
        consumer_max_fetch_size=settings.streams_fetch_partition_bytes,
        processing_guarantee=settings.streams_processing_guarantee,
        web_enabled=False,
        autodiscover=False,
        TableManager=CheckedTableManager,  # refuses to recover from less than the changelog
    )


settings = get_settings()
codecs = TopicCodecs(settings)
app: Any = DirectApp(settings) if settings.streams_runtime == "direct" else build_app(settings)


def _output_topic(role: str) -> Any:
    codec = AvroCodec(codecs.serializer(role), codecs.deserializer(role))
    return app.topic(codecs.topic(role), key_type=bytes, key_serializer="raw",
                     value_serializer=codec)  # fmt: skip


def _internal_topic(role: str) -> Any:
    return app.topic(codecs.topic(role), key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.topic_partitions)  # fmt: skip


# Tables are changelog-backed (they survive restarts and rebalances) and co-partitioned with the
# topics their agent reads. Keys and values are bytes, stored and logged as they are (Faust's
# serializer for bytes is raw); values are the JSON objects of streams.claim_case.ClaimCase and
# InvoiceCase, encoded once by the case (``to_json``) for the store and the changelog alike.
def _table(name: str) -> Any:
    return app.Table(name, default=None, key_type=bytes, value_type=bytes,
                     partitions=settings.topic_partitions,
                     options=dict(disk_state.OPTIONS))  # fmt: skip


claims = _table("claims")
invoices = _table("invoices")
budgets = _table("budgets")  # streams.budget_case.BudgetCase by budget key
budget_shares = _table("budget-shares")  # ClaimShare by budget key | claim id

# Claim side, keyed by claim id: claims, approvals, and the invoice side's answers and ticks.
claim_inputs = app.topic(*(codecs.topic(role) for role in ("claims_raw", "approvals_raw",
                                                           "claim_events")),
                         key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")  # fmt: skip
# Invoice side, keyed by invoice key: invoices, and claims starting or stopping to cite one.
invoice_inputs = app.topic(codecs.topic("invoices_raw"), codecs.topic("invoice_refs"),
                           key_type=bytes, value_type=bytes, key_serializer="raw",
                           value_serializer="raw")  # fmt: skip
# Budget side, keyed by budget (cost centre | period start): claims asking and giving back.
budget_inputs = app.topic(codecs.topic("budget_requests"), key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")  # fmt: skip
budget_requests = _output_topic("budget_requests")
claim_events = _output_topic("claim_events")
invoice_refs = _output_topic("invoice_refs")
postings = _output_topic("postings")
rejected = _internal_topic("rejected")  # failure records: original bytes, context in headers
claim_status = _output_topic("claim_status")
reference = ReferenceView(client_options(settings), codecs.topic("reference"),
                          settings.rate_max_age_days)  # fmt: skip
