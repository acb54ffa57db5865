"""The Faust app and its topics. Agents live in :mod:`streams.agents`.

Start a worker with ``erpbridge streams``.
"""

from __future__ import annotations

from pathlib import Path

import faust

from erpbridge.config import Settings, get_settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.contracts.faust_codec import AvroCodec
from streams.transactions import App


def build_app(settings: Settings) -> App:
    Path(settings.streams_datadir).mkdir(parents=True, exist_ok=True)
    return App(
        settings.streams_app_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=f"{settings.streams_datadir}/{settings.streams_app_id}",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.streams_session_timeout_s,
        broker_heartbeat_interval=settings.streams_heartbeat_interval_s,
        broker_rebalance_timeout=settings.streams_rebalance_timeout_s,
        producer_acks=-1,
        processing_guarantee=settings.streams_processing_guarantee,
        web_enabled=False,
        autodiscover=False,
    )


settings = get_settings()
codecs = TopicCodecs(settings)
app = build_app(settings)


def _input_topic(role: str) -> faust.TopicT:
    # Input values stay bytes: agents decode them, so bad bytes become rejections, not crashes.
    return app.topic(codecs.topic(role), key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")  # fmt: skip


def _output_topic(role: str) -> faust.TopicT:
    codec = AvroCodec(codecs.serializer(role), codecs.deserializer(role))
    return app.topic(codecs.topic(role), key_type=bytes, key_serializer="raw",
                     value_serializer=codec)  # fmt: skip


# claim id -> ClaimState (JSON): changelog-backed, so it survives restarts and rebalances, and
# co-partitioned with claims_raw (both keyed by claim id).
# Keys are bytes (raw both ways: Faust reads a table's keys as JSON unless told); values JSON.
claim_versions = app.Table("claim-versions", default=None, key_type=bytes,
                           partitions=settings.topic_partitions)  # fmt: skip

claims_raw = _input_topic("claims_raw")
postings = _output_topic("postings")
rejected = _output_topic("rejected")
