"""The recovery guard and the processors' audit, without Kafka."""

from types import SimpleNamespace

import pytest

from streams import framework
from streams.audit import SOURCES, AuditReport, PartitionAudit, latest_by_key, render
from streams.recovery import short_of_changelog


@pytest.fixture(scope="module")
def app():
    """A Faust app as the worker builds it (whichever runtime the settings choose)."""
    from streams.app import build_app, settings

    return build_app(settings)


def test_recovery_may_not_plan_to_read_less_than_the_changelog_holds() -> None:
    earliest = {"a": 0, "b": 0, "c": 5, "d": 0}
    end = {"a": 0, "b": 120, "c": 5, "d": 40}
    # a: empty; b: read to 119 (the end offset - 1, Faust's highwater); c: compacted away
    planned = {"a": -1, "b": 119, "c": -1, "d": -1}
    # d: the changelog holds 0..39 but recovery would read nothing (the issue-12 loss)
    assert short_of_changelog(planned, earliest, end) == {"d": (-1, 0, 40)}
    # an unknown end offset is never taken for "empty"
    assert short_of_changelog({"e": -1}, {"e": 0}, {"e": None}) == {"e": (-1, 0, -1)}


def test_start_up_names_a_framework_member_a_repair_relies_on_that_is_gone(app) -> None:
    framework.check(app)  # the pinned versions have them all
    assert framework.problems(app=app) == []
    changed = (
        *framework.METHODS,
        (SimpleNamespace, "_no_such_member", None),
        (framework.Consumer, "ack", ("self", "message", "extra")),
    )
    assert framework.problems(changed) == [
        "types.SimpleNamespace._no_such_member is gone",
        "faust.transport.drivers.aiokafka.Consumer.ack takes ('self', 'message'), the repairs "
        "call it with ('self', 'message', 'extra')",
    ]


def test_a_consumed_input_must_have_left_its_case() -> None:
    claims, approvals, invoices = SOURCES
    assert not claims.kept(None)
    # an approval came after a restart that lost the claim: the case has no claim in it
    assert not claims.kept({"claim_b64": None, "hash": None, "decision": "APPROVE"})
    assert claims.kept({"claim_b64": "eA==", "hash": "h"})
    assert approvals.kept({"claim_b64": None, "hash": None, "decision": "APPROVE"})
    # an invoice case made by a citation alone does not hold the invoice itself
    assert not invoices.kept({"hash": None, "status": "pending", "claimants": ["C1"]})
    assert invoices.kept({"hash": "h", "status": "valid"})
    assert invoices.key({"invoice_code": None, "invoice_number": "26312000000123456789"}) == (
        "26312000000123456789")  # fmt: skip


def test_the_changelog_is_read_as_its_last_value_per_key() -> None:
    rec = lambda key, value: SimpleNamespace(key=key, value=value)  # noqa: E731
    table = latest_by_key([rec(b"A", b'{"n": 1}'), rec(b"B", b'{"n": 1}'), rec(b"A", b'{"n": 2}'),
                           rec(b"B", None)])  # fmt: skip
    assert table == {b"A": {"n": 2}, b"B": None}


def test_the_report_names_each_lost_claim_with_where_it_was_consumed() -> None:
    part = PartitionAudit("p.claims.raw", 1, committed=40, records=40, keys=38,
                          lost=[("C7", 12)])  # fmt: skip
    report = AuditReport([part], cases={"claims": 37, "invoices": 0}, purged=0, unreadable=0,
                         complete_not_posted=[])  # fmt: skip
    assert not report.ok and report.lost == ["C7"]
    text = render(report)
    assert "LOST C7: consumed at p.claims.raw[1]@12, not in the claims table" in text
    assert text.endswith("1 lost, 0 stuck")
    assert report.to_json()["lost"] == ["C7"]


class _FakeConsumer:
    """What recovery asks of Faust's consumer: the highwaters as the fetcher knows them (None:
    no fetch returned yet), and, through the consumer's thread, the broker's offsets."""

    def __init__(self, fetcher_lso, earliest, end) -> None:
        self.fetcher_lso, self.earliest, self.end = fetcher_lso, earliest, end
        broker = SimpleNamespace(end_offsets=self._end_offsets)
        self._thread = SimpleNamespace(call_thread=self._call, _ensure_consumer=lambda: broker)

    async def highwaters(self, *tps):
        return {tp: self.fetcher_lso for tp in tps}

    async def earliest_offsets(self, *tps):
        return {tp: self.earliest for tp in tps}

    async def _end_offsets(self, tps):
        return {tp: self.end for tp in tps}

    async def _call(self, fun):
        return await fun()


def test_a_worker_refuses_to_recover_a_changelog_whose_end_it_does_not_know(app) -> None:
    import asyncio
    from collections import Counter

    from faust.types import TP

    from streams.recovery import RecoveryRefused

    recovery, tp = app.tables.recovery, TP("app-claims-changelog", 0)
    highwaters: Counter = Counter()
    # the fetcher has not seen the partition yet; the broker holds 0..1034
    with pytest.raises(RecoveryRefused, match=r"app-claims-changelog\[0\]: would read to -1"):
        asyncio.run(recovery._build_highwaters(_FakeConsumer(None, 0, 1035), {tp}, highwaters,
                                               "active"))  # fmt: skip
    # known, or really empty: recovery goes on
    asyncio.run(recovery._build_highwaters(_FakeConsumer(1035, 0, 1035), {tp}, highwaters,
                                           "active"))  # fmt: skip
    assert highwaters[tp] == 1034
    asyncio.run(recovery._build_highwaters(_FakeConsumer(None, 0, 0), {tp}, highwaters, "active"))
    assert highwaters[tp] == -1


def test_a_standby_copy_may_trail_a_changelog_its_owner_keeps_writing(app) -> None:
    import asyncio
    from collections import Counter

    from faust.types import TP

    from streams.recovery import RecoveryRefused

    recovery, tp = app.tables.recovery, TP("app-claims-changelog", 1)
    highwaters: Counter = Counter()
    # the other worker wrote 7 more records between the two asks (the fault suite's case)
    asyncio.run(recovery._build_highwaters(_FakeConsumer(62, 0, 69), {tp}, highwaters,
                                           "standby"))  # fmt: skip
    assert highwaters[tp] == 61
    with pytest.raises(RecoveryRefused, match=r"would read to 61, the changelog holds 0..68"):
        asyncio.run(recovery._build_highwaters(_FakeConsumer(62, 0, 69), {tp}, highwaters,
                                               "active"))  # fmt: skip


def test_a_recovery_never_seeks_a_changelog_to_a_negative_offset(app) -> None:
    """A standby partition's offset came as None; aiokafka refused the seek (ValueError 'Offset
    must be a positive integer') and the worker exited while starting its standby partitions
    (the fault suite, seed 469216). None, or any offset below -1, now reads the changelog from
    its start, as -1 does."""
    import asyncio
    from collections import Counter

    from faust.types import TP

    seeks = []

    async def seek_wait(offsets):
        seeks.append(dict(offsets))

    recovery = app.tables.recovery
    unknown, known, fresh, none = (TP("app-claims-changelog", p) for p in (2, 3, 4, 5))
    offsets = Counter({unknown: -2, known: 41, fresh: -1, none: None})
    consumer = SimpleNamespace(seek_wait=seek_wait)
    tps = {unknown, known, fresh, none}
    asyncio.run(recovery._seek_offsets(consumer, tps, offsets, "standby"))
    assert seeks == [{unknown: 0, known: 41, fresh: 0, none: 0}]
    assert offsets[unknown] == -2  # Faust's own bookkeeping is left as it was


def test_the_readiness_probe_creates_nothing_on_the_metrics_thread(app) -> None:
    """/readyz is answered on the metrics thread. Asked before the worker made its table
    recovery, it must say "starting", not make the recovery service there (bound to that
    thread's loop, the worker then hung at "Recovery: Starting")."""
    import threading

    from streams.worker import _not_ready

    made, app.tables._recovery = app.tables._recovery, None  # as before a worker starts
    try:
        answers: list[str | None] = []
        probe = threading.Thread(target=lambda: answers.append(_not_ready(app)))
        probe.start()
        probe.join(10)
        assert answers == ["starting"]
        assert app.tables._recovery is None
    finally:
        app.tables._recovery = made
