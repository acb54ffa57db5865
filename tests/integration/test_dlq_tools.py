"""The replay's safety rails on the real broker: an interrupted replay resumes where its last
acknowledged record left off; a second replay of the same topic waits for the lock; archive and
purge keep and remove what they say."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import FailureRecord, Stage
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.topic_reader import read_all, read_failures
from ops.audit import AuditTrail
from ops.locks import held
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import pipeline_env, topics_of, wait_for

pytestmark = pytest.mark.integration


class _Record:
    def __init__(self, topic: str, offset: int, key: bytes, value: bytes) -> None:
        self.topic, self.partition, self.offset = topic, 0, offset
        self.key, self.value, self.headers, self.timestamp = key, value, [], None


def _dead_letters(settings: Settings, count: int) -> list[str]:
    codecs, producer = TopicCodecs(settings), durable_producer(settings)
    ids = [f"T-{uuid.uuid4().hex[:6]}-{n}" for n in range(count)]
    try:
        for n, posting_id in enumerate(ids):
            value = codecs.serializer("postings")(
                dict(SAMPLES["erp_posting"], posting_id=posting_id, claim_id=posting_id)
            )
            failure = FailureRecord.of_record(
                _Record(topics_of(settings).postings, n, posting_id.encode(), value),
                stage=Stage.PUT, reason="refused", connector="tryton",
                error=ValueError("no account"))  # fmt: skip
            producer.send(topics_of(settings).erp_dead_letter, **failure.to_message()).get(30)
    finally:
        producer.close()
        codecs.close()
    return ids


def _cli(settings: Settings, *args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "erpbridge", "--log-level", "warning", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **pipeline_env(settings)}, **popen)  # type: ignore[call-overload]  # fmt: skip


def _replayed(settings: Settings, action: str) -> list[bytes]:
    return [r.key for r in read_all(settings, topics_of(settings).postings)
            if dict(r.headers or []).get("erpbridge.replay.action") == action.encode()]  # fmt: skip


def test_an_interrupted_replay_resumes_and_a_busy_topic_waits(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        schema_registry_url=schema_registry_url,
        redis_url=redis_url,
        topic_prefix=f"d{uuid.uuid4().hex[:10]}",
    )
    ensure_topics(settings)
    ids = _dead_letters(settings, 6)

    archive = tmp_path / "dlq.jsonl"
    done = _cli(settings, "dlq", "archive", "--topic", "erp_dead_letter", "--file", str(archive))
    assert done.wait(60) == 0, done.stderr.read() if done.stderr else ""
    lines = [json.loads(line) for line in archive.read_text(encoding="utf-8").splitlines()]
    assert sorted(base64.b64decode(line["key_base64"]).decode() for line in lines) == sorted(ids)

    topic = topics_of(settings).erp_dead_letter
    with held(redis_url, f"erpbridge:lock:{settings.topic_prefix}:replay:{topic}"):
        busy = _cli(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes")
        assert busy.wait(60) != 0 and "held by another run" in (busy.stderr.read() or "")

    action = uuid.uuid4().hex[:12]
    first = _cli(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes", "--rate", "2",
                 "--action-id", action)  # fmt: skip
    wait_for(lambda: len(_replayed(settings, action)) >= 2, timeout=60, what="two replayed")
    first.send_signal(signal.SIGINT)
    assert first.wait(60) != 0
    interrupted = len(_replayed(settings, action))
    assert 2 <= interrupted < 6
    again = _cli(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes",
                 "--action-id", action, "--json")  # fmt: skip
    assert again.wait(120) == 0, again.stderr.read() if again.stderr else ""
    report = json.loads(again.stdout.read() if again.stdout else "{}")
    replayed = _replayed(settings, action)
    assert sorted(set(k.decode() for k in replayed)) == sorted(ids)  # every one, once more
    # only the tail not yet acknowledged was redone: at most the one in flight twice
    assert report["replayed"] == 6 - interrupted or report["replayed"] == 7 - interrupted
    assert len(replayed) <= 7
    outcomes = [r["outcome"] for r in AuditTrail(settings).records()
                if r["action_id"] == action]  # fmt: skip
    assert outcomes == ["interrupted", "ok"]

    purged = _cli(settings, "dlq", "purge", "--topic", "erp_dead_letter", "--yes")
    assert purged.wait(60) == 0 and "purged 6" in (purged.stdout.read() if purged.stdout else "")
    time.sleep(1)
    assert read_failures(settings, "erp_dead_letter") == []
    assert [r["action"] for r in AuditTrail(settings).records()][-1] == "dlq.purge"
