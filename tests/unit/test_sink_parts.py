import datetime
import time

import pytest

from connectors.erp.rest import DEFAULT_TEMPLATE, RestErpSettings, RestErpWriter, render
from erpbridge.config import Settings
from erpbridge.failures import (
    CircuitBreaker,
    PermanentError,
    RetriesExhausted,
    RetryableError,
    RetryPolicy,
    RetryWithTolerance,
    Stage,
    State,
    Tolerance,
    ToleranceExceeded,
    http_failure,
    retry_after_s,
    retryable_status,
)
from erpbridge.model import Posting, PostingLine


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_n_failures_probes_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker("t", threshold=3, probe_interval_s=5, clock=clock)
    breaker.failure(), breaker.failure()
    breaker.success()  # a success resets the count
    breaker.failure(), breaker.failure()
    assert breaker.state is State.CLOSED
    breaker.failure()
    assert breaker.state is State.OPEN and not breaker.probe_due()
    clock.now += 5
    assert breaker.probe_due()
    breaker.probed(answered=False)
    assert breaker.state is State.OPEN and not breaker.probe_due()
    clock.now += 5
    breaker.probed(answered=True)
    assert breaker.state is State.HALF_OPEN
    breaker.failure()  # one failure when half-open opens it again
    assert breaker.state is State.OPEN
    clock.now += 5
    breaker.probed(answered=True)
    breaker.success()
    assert breaker.state is State.CLOSED
    assert breaker.open_seconds() == pytest.approx(15.0)


def _operator(clock: Clock, **kwargs) -> RetryWithTolerance:
    breaker = CircuitBreaker("t", threshold=1, probe_interval_s=1, clock=clock)
    return RetryWithTolerance("t", Stage.PUT, RetryPolicy(0.01, 0.02), breaker=breaker, **kwargs)


def test_a_records_retry_budget_does_not_run_while_the_breaker_is_open(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    retry = _operator(clock, timeout_s=10.0)
    attempts = retry.start()
    assert retry.failed(attempts, RetryableError("down", retry_after=3.0), Stage.PUT) == 3.0
    assert retry.breaker.state is State.OPEN  # threshold 1
    clock.now += 60  # a minute with the breaker open: not spent
    assert not retry.exhausted(attempts)
    retry.probed(answered=True)
    retry.succeeded()
    clock.now += 9
    assert not retry.exhausted(attempts)
    clock.now += 2  # 11 s spent while closed: past the budget
    assert retry.failed(attempts, RetryableError("down"), Stage.PUT) is None
    final = retry.final(attempts, "t[0]@1")
    assert isinstance(final, RetriesExhausted) and "gave up after 2 attempts" in str(final)


def test_retry_budgets_and_tolerance() -> None:
    clock = Clock()
    forever = _operator(clock)  # timeout -1, no cap
    attempts = forever.start()
    assert all(forever.failed(attempts, TimeoutError(), Stage.PUT) is not None for _ in range(50))
    capped = _operator(clock, max_attempts=2)
    attempts = capped.start()
    assert capped.failed(attempts, RetryableError("x"), Stage.PUT) is not None
    assert capped.failed(attempts, RetryableError("x"), Stage.PUT) is None
    # a permanent error is final at once, and says the other side is up
    refused = _operator(clock, tolerance=Tolerance.NONE)
    attempts = refused.start()
    assert refused.failed(attempts, PermanentError("no such account"), Stage.PUT) is None
    assert refused.breaker.state is State.CLOSED
    with pytest.raises(ToleranceExceeded, match=r"t\[0\]@7 failed for good: no such account"):
        refused.final(attempts, "t[0]@7")


def test_only_failures_at_the_guarded_stage_move_the_breaker() -> None:
    retry = _operator(Clock())
    attempts = retry.start()
    retry.failed(attempts, RetryableError("registry down"), Stage.CONVERT)
    assert retry.breaker.state is State.CLOSED
    retry.failed(attempts, RetryableError("ERP down"), Stage.PUT)
    assert retry.breaker.state is State.OPEN


def test_a_blocking_call_retries_until_success_and_raises_what_is_permanent() -> None:
    import threading

    retry = RetryWithTolerance("t", Stage.SOURCE_POLL, RetryPolicy(0.001, 0.002))
    answers = iter([RetryableError("busy"), TimeoutError("slow"), "page"])

    def fetch() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    seen: list[int] = []
    assert retry.call(fetch, threading.Event(), lambda a, w: seen.append(a.count)) == "page"
    assert seen == [1, 2]
    with pytest.raises(PermanentError, match="refused"):
        retry.call(lambda: (_ for _ in ()).throw(PermanentError("refused")), threading.Event())


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s({"Retry-After": "7"}) == 7.0
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    assert 25 < retry_after_s({"Retry-After": later.strftime("%a, %d %b %Y %H:%M:%S GMT")}) <= 30
    assert retry_after_s({}) is None and retry_after_s({"Retry-After": "soon"}) is None


def test_the_rest_body_template_maps_postings_and_refuses_unknown_fields() -> None:
    posting = Posting(
        "P-1",
        "C-1",
        "oa",
        "E1",
        "张伟",
        datetime.date(2026, 11, 2),
        "CNY",
        (PostingLine("5.2.2", "travel", 55300, ("2631",)),),
        55300,
        "CC-1",
        "D-1",
    )
    body = render(DEFAULT_TEMPLATE, posting)
    assert body["total"] == "553.00" and body["date"] == "2026-11-02"
    assert body["lines"] == [
        {"account": "5.2.2", "amount": "553.00", "net": "553.00", "memo": "travel",
         "invoices": ["2631"], "input_vat": []}
    ]  # fmt: skip
    assert body["input_vat"] == "0.00"
    assert (body["department"], body["cost_centre"]) == ("D-1", "CC-1")
    with pytest.raises(ValueError, match="unknown posting field"):
        render({"x": "$posting.colour"}, posting)


def test_rest_settings_are_checked_at_start_up(tmp_path) -> None:
    with pytest.raises(ValueError, match="bearer needs"):
        RestErpSettings(auth="bearer")
    bad = tmp_path / "template.json"
    bad.write_text('{"who": "$line.account_code"}', encoding="utf-8")
    with pytest.raises(ValueError, match="outside a \\$each"):
        RestErpWriter(RestErpSettings(template_file=bad))


def test_each_erp_writer_has_its_own_default_consumer_group() -> None:
    settings = Settings(topic_prefix="acme")
    # before, every writer shared the Tryton group, so a Tryton and a REST sink split postings
    assert settings.sink_group("tryton") == "acme-sink-tryton"
    assert settings.sink_group("rest") == "acme-sink-rest"
    assert Settings().sink_group("tryton") == "erpbridge-sink-tryton"  # as before, by default
    assert Settings(sink_group_id="ours").sink_group("rest") == "ours"  # an explicit one wins


def test_one_reading_of_retryable_http_statuses() -> None:
    assert [s for s in (200, 400, 408, 429, 501, 503) if retryable_status(s)] == [408, 429, 503]
    # Tryton and the poller retry every server error as well
    assert retryable_status(501, any_server_error=True) and not retryable_status(
        404, any_server_error=True
    )
    assert not retryable_status(503, frozenset({429}))  # a REST writer's own set wins
    slow_down = http_failure(429, {"Retry-After": "12"}, "busy")
    assert isinstance(slow_down, RetryableError) and slow_down.retry_after == 12.0
    assert isinstance(http_failure(422, {}, "bad"), PermanentError)


class _AllOrNothing:
    """A target whose batch call is refused as a whole when one item is bad (as some ERP batch
    APIs answer): written alone, each item gets its own outcome."""

    name, stage = "allornothing", Stage.PUT
    input_role, dead_letter_role = "postings", "erp_dead_letter"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.written_items: list[str] = []
        self.given_up_items: list[str] = []

    def write_many(self, items):
        self.calls.append(list(items))
        if "bad" in items:
            raise PermanentError(f"the batch holds a bad item ({len(items)} items)")
        return [f"doc-{item}" for item in items]

    def written(self, item, answer) -> str:
        self.written_items.append(item)
        return "booked"

    def given_up(self, item, error) -> None:
        self.given_up_items.append(item)


class _Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    def send(self, topic, **message):
        self.messages.append((topic, message))
        return self

    def get(self, timeout=None):
        return None


def test_a_batch_refused_as_a_whole_is_written_record_by_record() -> None:
    from kafka.consumer.fetcher import ConsumerRecord

    from connectors.sinks.runner import SinkRunner

    target = _AllOrNothing()
    runner = SinkRunner(Settings(topic_prefix="acme"), target)
    runner.producer = _Sent()
    items = ["a", "bad", "c"]
    batch = [(ConsumerRecord("acme.postings", 0, None, n, 0, 0, item.encode(), b"v", [], None,
                             1, 1, 0), item) for n, item in enumerate(items)]  # fmt: skip
    results = runner._write_batch(batch)
    assert [r.done for r in results] == [True, True, True]
    assert target.calls == [items, ["a"], ["bad"], ["c"]]
    assert target.written_items == ["a", "c"] and target.given_up_items == ["bad"]
    (dead,) = runner.producer.messages
    assert dead[0] == runner.dead_letter_topic and dead[1]["key"] == b"bad"
    runner._pool.shutdown()
