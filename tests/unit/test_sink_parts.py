import datetime
import time

import pytest

from connectors.erp.rest import DEFAULT_TEMPLATE, RestErpSettings, RestErpWriter, render
from connectors.sinks.breaker import CircuitBreaker, State
from connectors.sinks.dead_letter import Failure
from erpbridge.config import Settings
from erpbridge.model import Posting, PostingLine
from erpbridge.retry import retry_after_s, retryable_status


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


def test_a_records_retry_budget_does_not_run_while_the_breaker_is_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker("t", threshold=1, probe_interval_s=1, clock=clock)
    settings = Settings(sink_errors_retry_timeout_s=0.0)
    failure = Failure.first(breaker)
    failure.again(retry_after_s=3.0)
    assert failure.attempts == 1 and failure.retry_after_s == 3.0
    assert failure.exhausted(settings, breaker)  # timeout 0: no retries
    assert not failure.exhausted(Settings(), breaker)  # -1: forever
    assert (
        Failure.first(breaker).exhausted(Settings(sink_errors_retry_max_attempts=0), breaker)
        is False
    )
    capped = Failure.first(breaker)
    capped.again(), capped.again()
    assert capped.exhausted(Settings(sink_errors_retry_max_attempts=2), breaker)


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


class _Receiver:
    """The expense platform's feedback URL: answers 503 ``down`` times, then 200 (or 400)."""

    def __init__(self, webhook, down: int, then: int = 200) -> None:
        self.webhook, self.down, self.then = webhook, down, then
        self.seen: list[tuple[float, str]] = []  # (time, breaker state) at each request

    def __call__(self, request):
        import httpx

        self.seen.append((time.monotonic(), self.webhook.breaker.state.name))
        if len(self.seen) <= self.down:
            return httpx.Response(503)
        return httpx.Response(self.then)


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, topic, **kwargs):
        self.sent.append((topic, kwargs))
        return type("Ack", (), {"get": lambda self, timeout=None: None})()


def _webhook(down: int, then: int = 200, **settings):
    import httpx

    from connectors.sinks.webhook_out import FeedbackWebhook

    config = Settings(sink_breaker_threshold=3, sink_breaker_probe_interval_s=0.3,
                      sink_retry_initial_s=0.01, sink_retry_max_s=0.02, **settings)  # fmt: skip
    webhook = FeedbackWebhook(config, "http://receiver.test/feedback", "secret")
    receiver = _Receiver(webhook, down, then)
    webhook.http = httpx.Client(transport=httpx.MockTransport(receiver))
    feedback = {"posting_id": "P1", "claim_id": "P1", "status": "BOOKED"}
    webhook.codecs = type("Codecs", (), {"deserializer": lambda self, role: lambda v: feedback,
                                         "close": lambda self: None})()  # fmt: skip
    record = type("Record", (), {"topic": "t.erp.feedback", "partition": 0, "offset": 7,
                                 "key": b"P1", "value": b"x", "headers": [],
                                 "timestamp": 0})()  # fmt: skip
    return webhook, receiver, record


def test_the_feedback_webhooks_breaker_opens_while_the_receiver_is_down_and_closes_after() -> None:
    webhook, receiver, record = _webhook(down=5)
    assert webhook._deliver(_Producer(), record) is True
    states = [state for _, state in receiver.seen]
    # three failures in a row open it; while open only one probe request goes out per interval
    assert states[:3] == ["CLOSED"] * 3
    assert states[3:] == ["HALF_OPEN"] * 3, states  # probes: 503, 503, then 200
    gaps = [b - a for (a, _), (b, _) in zip(receiver.seen[2:], receiver.seen[3:], strict=False)]
    assert min(gaps) >= 0.29  # nothing sent while open but the probes
    assert webhook.breaker.state is State.CLOSED and len(receiver.seen) == 6


def test_the_feedback_webhook_stops_on_a_refusal_under_errors_tolerance_none() -> None:
    from connectors.sinks.dead_letter import SinkStopped

    webhook, receiver, record = _webhook(down=0, then=400, sink_errors_tolerance="none")
    producer = _Producer()
    with pytest.raises(SinkStopped, match=r"t.erp.feedback\[0\]@7 failed for good"):
        webhook._deliver(producer, record)
    assert producer.sent == [] and webhook.stop.is_set()  # nothing dead-lettered, nothing skipped
    webhook, _, record = _webhook(down=0, then=400)  # tolerance all: dead-lettered
    producer = _Producer()
    assert webhook._deliver(producer, record) is True
    assert [topic for topic, _ in producer.sent] == ["erpbridge.erp.feedback.dlq"]


def test_one_reading_of_retryable_http_statuses() -> None:
    assert [s for s in (200, 400, 408, 429, 501, 503) if retryable_status(s)] == [408, 429, 503]
    # Tryton and the poller retry every server error as well
    assert retryable_status(501, any_server_error=True) and not retryable_status(
        404, any_server_error=True
    )
    assert not retryable_status(503, frozenset({429}))  # a REST writer's own set wins
