"""A streams worker started before its topics exist (issue 28): in Kubernetes nothing orders the
topics Job before the workers. The worker waits for its input topics, then processes what comes:
a consumer that subscribed before they existed would learn of them only at its next metadata
refresh (five minutes), holding no input partition and saying it is ready meanwhile."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from connectors.sources.reference_file import publish_reference
from erpbridge.kafka_io import ensure_topics
from tests.integration.claim_load import Feeder, postings_of, workload
from tests.integration.pipeline import (
    SAMPLE_REFERENCE,
    make_settings,
    pipeline_workers,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_worker_started_before_its_topics_waits_for_them_then_processes(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    (streams,) = pipeline_workers(settings, tmp_path / "w", sink=False)
    streams.start()
    try:
        time.sleep(8)  # the worker is up and has found no topic
        assert streams.proc is not None and streams.proc.poll() is None, streams.tail()
        ensure_topics(settings)
        for path in sorted(SAMPLE_REFERENCE.glob("*.csv")):
            publish_reference(path, settings)
        claims = workload(random.Random(7), "000007", 5, 1)
        feeder = Feeder(settings, claims, random.Random(8))
        feeder.start()
        feeder.join()
        assert feeder.error is None
        wanted = {claim.claim_id for claim in claims}
        wait_for(lambda: wanted <= set(postings_of(settings)), 90,
                 "the 5 claims posted by a worker started before its topics",
                 [streams])  # fmt: skip
    finally:
        streams.stop()
