"""The Faust app and its topics. Agents live in :mod:`streams.agents`.

Start a worker with ``erpbridge streams``.
"""

from __future__ import annotations

from pathlib import Path

import faust

from erpbridge.config import Settings, get_settings
from erpbridge.topics import Topics


def build_app(settings: Settings) -> faust.App:
    Path(settings.streams_datadir).mkdir(parents=True, exist_ok=True)
    return faust.App(
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
        web_enabled=False,
        autodiscover=False,
    )


settings = get_settings()
topics = Topics(settings.topic_prefix)
app = build_app(settings)


def _raw_topic(name: str) -> faust.TopicT:
    # Values stay bytes here: agents decode them, so bad bytes become rejections, not crashes.
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


claims_raw = _raw_topic(topics.claims_raw)
claims_normalized = _raw_topic(topics.claims_normalized)
claims_rejected = _raw_topic(topics.claims_rejected)
