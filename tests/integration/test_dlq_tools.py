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
from erpbridge.kafka_io import ensure_topics
from erpbridge.topic_reader import read_all, read_failures
from ops.audit import AuditTrail
from ops.locks import held
from tests.integration.dead_letters import write_dead_letters
from tests.integration.pipeline import make_settings, pipeline_env, topics_of, wait_for

pytestmark = pytest.mark.integration


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
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    # at --rate 0.5, 24 s to replay them all: the interruption lands in the middle even when each
    # look at the topic takes seconds under load (at 6, 2 and 1/s it finished first in make test)
    count = 12
    ids = write_dead_letters(settings, count)

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
    first = _cli(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes", "--rate", "0.5",
                 "--action-id", action)  # fmt: skip
    wait_for(lambda: len(_replayed(settings, action)) >= 2, timeout=60, what="two replayed")
    first.send_signal(signal.SIGINT)
    assert first.wait(60) != 0
    interrupted = len(_replayed(settings, action))
    assert 2 <= interrupted < count
    again = _cli(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes",
                 "--action-id", action, "--json")  # fmt: skip
    assert again.wait(120) == 0, again.stderr.read() if again.stderr else ""
    report = json.loads(again.stdout.read() if again.stdout else "{}")
    replayed = _replayed(settings, action)
    assert sorted(set(k.decode() for k in replayed)) == sorted(ids)  # every one, once more
    # only the tail not yet acknowledged was redone: at most the one in flight twice
    assert report["replayed"] in (count - interrupted, count + 1 - interrupted)
    assert len(replayed) <= count + 1
    outcomes = [(r["action"], r["outcome"]) for r in AuditTrail(settings).records()
                if r["action_id"] == action]  # fmt: skip
    assert outcomes == [("dlq.replay.start", "ok"), ("dlq.replay", "interrupted"),
                        ("dlq.replay.start", "ok"), ("dlq.replay", "ok")]  # fmt: skip
    assert report["replayed"] + report["replayed_earlier"] == count

    purged = _cli(settings, "dlq", "purge", "--topic", "erp_dead_letter", "--yes")
    assert purged.wait(60) == 0 and f"purged {count}" in (
        purged.stdout.read() if purged.stdout else ""
    )
    time.sleep(1)
    assert read_failures(settings, "erp_dead_letter") == []
    assert [r["action"] for r in AuditTrail(settings).records()][-1] == "dlq.purge"


def test_a_replay_killed_outright_is_in_the_trail_and_its_resume_takes_over_at_once(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    """SIGKILL leaves no chance to audit or to release the lock: the start was audited before
    the first republish, the resume takes the dead run's lock over without waiting for it to
    lapse, and the trail counts exactly what went out (republish and progress are one
    transaction, so nothing went out twice)."""
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    ids = write_dead_letters(settings, 8)
    action = uuid.uuid4().hex[:12]
    first = _cli(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes", "--rate", "2",
                 "--action-id", action)  # fmt: skip
    wait_for(lambda: len(_replayed(settings, action)) >= 2, timeout=60, what="two replayed")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    gone_out = len(_replayed(settings, action))
    trail = [r for r in AuditTrail(settings).records() if r["action_id"] == action]
    assert [r["action"] for r in trail] == ["dlq.replay.start"]  # the start, before any write

    started = time.monotonic()
    again = _cli(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes",
                 "--action-id", action, "--json")  # fmt: skip
    assert again.wait(120) == 0, again.stderr.read() if again.stderr else ""
    took = time.monotonic() - started
    report = json.loads(again.stdout.read() if again.stdout else "{}")
    replayed = [k.decode() for k in _replayed(settings, action)]
    assert sorted(replayed) == sorted(ids)  # each once: nothing lost, nothing twice
    assert report["replayed_earlier"] == gone_out and report["replayed"] == 8 - gone_out
    assert 2 <= gone_out < 8
    trail = [r for r in AuditTrail(settings).records() if r["action_id"] == action]
    assert [(r["action"], r["outcome"]) for r in trail] == [
        ("dlq.replay.start", "ok"),
        ("dlq.replay.start", "ok"),
        ("dlq.replay", "ok"),
    ]
    final = trail[-1]["counts"]
    assert final["replayed"] + final["replayed_earlier"] == len(replayed) == 8
    assert not [r for r in AuditTrail(settings).records() if r["outcome"] == "refused"]
    print(
        f"killed after {gone_out} of 8 went out; the resume took over and finished in "
        f"{took:.1f} s (the lock's time-to-live is 30 s)"
    )
    assert took < 25
