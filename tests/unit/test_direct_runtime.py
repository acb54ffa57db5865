"""The direct runtime's pieces that need no broker: its tables, its worker id, its signals."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from erpbridge.config import Settings
from streams.direct import DirectApp, _worker_id


def _event(partition: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(partition=partition))


def test_a_table_keeps_each_partitions_keys_and_logs_the_last_value_of_each() -> None:
    app = DirectApp(Settings(streams_app_id="t-app"))
    table = app.Table("claims")
    assert table.changelog == "t-app-claims-changelog"
    table.put_for(_event(0), b"A", b"1")
    table.put_for(_event(0), b"A", b"2")  # one changelog record: the last value
    table.put_for(_event(1), b"B", b"1")
    table.put_for(_event(0), b"C", b"1")
    table.put_for(_event(0), b"C", None)  # deleted: a tombstone
    assert table.get(b"A") == b"2" and table.get(b"C") is None
    assert list(table.entries_of(0)) == [(b"A", b"2")]
    assert list(table.entries_of(1)) == [(b"B", b"1")]
    assert app._changelog == {(table, 0): {b"A": b"2", b"C": None}, (table, 1): {b"B": b"1"}}
    assert table.key_count() == 2
    table.drop(0)  # the partition went to another worker
    assert table.get(b"A") is None and table.get(b"B") == b"1"


def test_a_sweep_reads_a_partition_in_slices_from_where_the_last_one_ended() -> None:
    table = DirectApp(Settings()).Table("claims")
    for n in range(5):
        table.restore(2, f"K{n}".encode(), b"v")
    first, following = table.sweep_of(2, None, 2)
    assert [k for k, _ in first] == [b"K0", b"K1"] and following == b"K2"
    second, following = table.sweep_of(2, following, 2)
    assert [k for k, _ in second] == [b"K2", b"K3"] and following == b"K4"
    last, following = table.sweep_of(2, following, 2)
    assert [k for k, _ in last] == [b"K4"] and following is None


def test_the_worker_id_survives_a_restart_but_is_not_shared_by_two_live_workers(
    tmp_path: Path,
) -> None:
    # another process holds the folder (a live worker): this one gets an id of its own
    code = ("import sys, time; from pathlib import Path; from streams.direct import _worker_id; "
            "print(_worker_id(Path(sys.argv[1])), flush=True); time.sleep(30)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline().strip()
        assert len(held) == 32
        assert _worker_id(tmp_path) != held
    finally:
        holder.kill()
        holder.wait()
    # once it is gone, its restart (here: this process) takes the kept id again
    assert _worker_id(tmp_path) == held


def test_signals_call_their_receivers_as_faust_does() -> None:
    app = DirectApp(Settings())
    seen: list[tuple] = []

    async def later(sender, *args, **kwargs) -> None:
        seen.append(("async", args, kwargs))

    app.on_partitions_revoked.connect(lambda sender, *args, **kwargs: seen.append(("sync", args)))
    app.on_partitions_revoked.connect(later)
    asyncio.run(app.on_partitions_revoked.send({1}))
    assert seen == [("sync", ({1},)), ("async", ({1},), {})]


class _Message:
    def __init__(self, topic: str, partition: int, offset: int, written_ms: int) -> None:
        self._at = (topic, partition, offset, written_ms)

    def topic(self) -> str:
        return self._at[0]

    def partition(self) -> int:
        return self._at[1]

    def offset(self) -> int:
        return self._at[2]

    def timestamp(self) -> tuple[int, int]:
        return 1, self._at[3]


def test_a_batch_is_handled_in_written_order_across_partitions_each_partition_in_its_own() -> None:
    from streams.direct import in_written_order

    # librdkafka hands over each partition's records together: the claims, then the approvals
    claims = [_Message("claims", 0, 0, 10), _Message("claims", 0, 1, 30)]
    approvals = [_Message("approvals", 0, 0, 20), _Message("approvals", 0, 1, 40)]
    late = [_Message("claims", 1, 0, 50), _Message("claims", 1, 1, 5)]  # a clock went back
    handled = [(m.topic(), m.partition(), m.offset())
               for m in in_written_order([*claims, *late, *approvals])]  # fmt: skip
    assert handled == [("claims", 0, 0), ("approvals", 0, 0), ("claims", 0, 1),
                       ("approvals", 0, 1), ("claims", 1, 0), ("claims", 1, 1)]  # fmt: skip


def test_a_commit_step_is_asked_again_while_its_error_is_retriable_and_never_past_a_fatal_one() -> (
    None
):
    from confluent_kafka import KafkaError, KafkaException

    from erpbridge.failures import RetriesExhausted, Stage
    from erpbridge.failures.retry import RetryPolicy, RetryWithTolerance
    from streams import direct

    def policy(timeout_s: float) -> RetryWithTolerance:
        return RetryWithTolerance("t", Stage.COMMIT, RetryPolicy(0.001, 0.001), timeout_s)

    moving = KafkaException(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, retriable=True))
    fenced = KafkaException(KafkaError(KafkaError._FENCED, fatal=True))
    calls: list[int] = []

    def step(failures: list[KafkaException]) -> Callable[[], None]:
        def call() -> None:
            calls.append(1)
            if failures:
                raise failures.pop(0)

        return call

    direct._retrying(step([moving, moving]), policy(30))  # moved twice, then answered
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(KafkaException):
        direct._retrying(step([fenced, moving]), policy(30))  # fatal: given up at once
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(RetriesExhausted):
        direct._retrying(step([moving] * 5), policy(0))  # retriable, but past its time
    assert len(calls) == 1


def test_reading_a_changelogs_end_waits_while_every_broker_is_away_and_says_so_when_it_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compose stack saw podman's DNS stall: the worker's restore asked a changelog's end,
    librdkafka answered _ALL_BROKERS_DOWN (not a retriable error by its flag), and the worker
    died with a traceback. The restore waits that out, and stops broken (status 1, its reason
    said) only past RESTORE_RETRY's time."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from erpbridge.failures import RetriesExhausted, Stage
    from erpbridge.failures.retry import RetryPolicy, RetryWithTolerance
    from streams import direct

    away = KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert not away.args[0].retriable()

    class Reader:
        def __init__(self, failures: int) -> None:
            self.failures, self.calls = failures, 0

        def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
            self.calls += 1
            if self.calls <= self.failures:
                raise away
            return 3, 17

    quick = RetryWithTolerance("t", Stage.RESTORE, RetryPolicy(0.001, 0.001), 30)
    monkeypatch.setattr(direct, "RESTORE_RETRY", quick)
    reader = Reader(failures=4)
    assert direct._watermarks(reader, TopicPartition("t.changelog", 0)) == (3, 17)  # type: ignore[arg-type]
    assert reader.calls == 5
    monkeypatch.setattr(direct, "RESTORE_RETRY", RetryWithTolerance(
        "t", Stage.RESTORE, RetryPolicy(0.001, 0.001), 0))  # fmt: skip
    with pytest.raises(RetriesExhausted):
        direct._watermarks(Reader(failures=99), TopicPartition("t.changelog", 0))  # type: ignore[arg-type]


def test_lost_partitions_whose_transaction_the_coordinator_aborted_take_a_new_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 3-broker repeated-kill test, seed 530117: brokers away, the open transaction outlived
    its timeout and the coordinator aborted it, bumping the epoch; the session ended, the
    partitions were lost, and the lost path's abort failed with _FENCED: the worker stopped.
    The work is dropped either way, so a new producer takes the id up; another abort failure
    still stops the worker."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from streams import direct

    class Producer:
        def __init__(self, error: KafkaException | None) -> None:
            self.error = error

        def abort_transaction(self, timeout: float) -> None:
            if self.error is not None:
                raise self.error

        def begin_transaction(self) -> None:
            pass

    fenced = KafkaException(KafkaError(KafkaError._FENCED, fatal=True))
    app = DirectApp(Settings(streams_processing_guarantee="exactly_once"))
    assert app.exactly_once
    table = app.Table("claims")
    table.put_for(_event(0), b"A", b"1")
    app._held = {0}
    fresh = Producer(None)
    monkeypatch.setattr(app, "_new_producer", lambda: fresh)
    app._producer = Producer(fenced)  # type: ignore[assignment]
    app._on_lost(None, [TopicPartition("t.claims.raw", 0)])  # type: ignore[arg-type]
    assert app._producer is fresh and table.get(b"A") is None and app._held == set()
    app._producer = Producer(KafkaException(KafkaError(KafkaError._TIMED_OUT)))  # type: ignore[assignment]
    with pytest.raises(direct._Broken, match="the abort after lost partitions failed"):
        app._on_lost(None, [TopicPartition("t.claims.raw", 0)])  # type: ignore[arg-type]
    for unsent in app._signals:  # the revokes the loop would send: none runs here
        unsent.close()
