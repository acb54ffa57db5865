"""W3C trace context through the pipeline, with OpenTelemetry: one trace per claim.

A source starts the claim's trace (or continues the sender's, from its ``traceparent`` header)
and writes the context into the Kafka record's headers (``traceparent``, ``tracestate``); each
stage after it (the processors, the sink and its ERP call, the feedback delivery) reads the
context from the record it handles, opens its span as a child and writes the context on what it
sends. The processors keep the claim's context with its case, so its posting continues the
claim's trace whichever input (the approval, an invoice) completed it.

Off by default (``ERPBRIDGE_TRACING=off``: OpenTelemetry's no-op API, nothing exported, no
headers written). ``otlp``: spans batched to an OTLP/HTTP collector
(``ERPBRIDGE_TRACING_OTLP_ENDPOINT``); ``file``: each span as one JSON line appended to
``ERPBRIDGE_TRACING_FILE`` (SDK's console exporter; tests read it).
"""

from __future__ import annotations

import atexit
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from erpbridge.config import Settings

TRACER = trace.get_tracer("erpbridge")
HEADERS = ("traceparent", "tracestate")
_configured: list[str] = []


def configure(settings: Settings, component: str) -> str:
    """Install the exporter ``settings`` name for this process (once); returns what is on."""
    if settings.tracing == "off" or _configured:
        return _configured[0] if _configured else "off"
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"erpbridge-{component}", "service.namespace": settings.topic_prefix}
        )
    )
    if settings.tracing == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.tracing_otlp_endpoint)))  # fmt: skip
    else:  # file: one JSON line per span, written as each ends
        out = open(settings.tracing_file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        provider.add_span_processor(
            SimpleSpanProcessor(
                ConsoleSpanExporter(
                    out=out, formatter=lambda span: json.dumps(json.loads(span.to_json())) + "\n"
                )
            )
        )
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # what is batched is sent before the process ends
    _configured.append(settings.tracing)
    return settings.tracing


def shutdown() -> None:
    """Flush what is batched (a stopping worker's last spans)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def context_from(headers: Iterable[tuple[str, bytes | str]] | Mapping[str, Any] | None
                 ) -> Context:  # fmt: skip
    """The trace context a Kafka record's (or an HTTP request's) headers carry."""
    carrier = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in pairs:
        if key.lower() in HEADERS:
            carrier[key.lower()] = value.decode("latin-1") if isinstance(value, bytes) else value
    return propagate.extract(carrier)


def headers_of(span_context: Context | None = None) -> list[tuple[str, bytes]]:
    """The current (or the given) trace context as Kafka record headers; none when tracing is
    off or nothing is traced."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=span_context)
    return [(key, value.encode("latin-1")) for key, value in carrier.items() if key in HEADERS]


def with_trace(headers: Sequence[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """``headers`` with the current trace context in place of any they carried."""
    kept = [(k, v) for k, v in headers or () if k.lower() not in HEADERS]
    return kept + headers_of()


def traceparent() -> str | None:
    """The current context as a ``traceparent`` value, to keep with a case."""
    found = dict(headers_of())
    return found["traceparent"].decode() if "traceparent" in found else None


def context_of_traceparent(value: str | None) -> Context:
    return propagate.extract({"traceparent": value} if value else {})


@contextmanager
def span(name: str, parent: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
         **attributes: Any) -> Iterator[Span]:  # fmt: skip
    """A span of ours, child of ``parent`` (a record's context) or of the current one."""
    clean = {f"erpbridge.{k}": v for k, v in attributes.items() if v is not None}
    with TRACER.start_as_current_span(name, context=parent, kind=kind,
                                      attributes=clean) as current:  # fmt: skip
        yield current


def start_span(name: str, parent: Context | None, **attributes: Any) -> Span:
    """A span started now and ended by :func:`ending` (a record's, across a batch call)."""
    clean = {f"erpbridge.{k}": v for k, v in attributes.items() if v is not None}
    return TRACER.start_span(name, context=parent, kind=SpanKind.CONSUMER, attributes=clean)


_ITEM_SPANS: ContextVar[Sequence[Span]] = ContextVar("erpbridge_item_spans", default=())


@contextmanager
def item_spans(spans: Sequence[Span]) -> Iterator[None]:
    """While a batch is written: the span of each of its items, by position."""
    token = _ITEM_SPANS.set(spans)
    try:
        yield
    finally:
        _ITEM_SPANS.reset(token)


def item_context(position: int) -> Context | None:
    """The context of the batch's item at ``position`` (None outside a batch: the current)."""
    spans = _ITEM_SPANS.get()
    return trace.set_span_in_context(spans[position]) if position < len(spans) else None


@contextmanager
def ending(record_span: Span, outcome: Any) -> Iterator[None]:
    """Make ``record_span`` current while its outcome is handled, then end it (in error when
    the outcome is an exception)."""
    if isinstance(outcome, BaseException):
        record_span.record_exception(outcome)
        record_span.set_status(Status(StatusCode.ERROR, str(outcome)[:200]))
    with trace.use_span(record_span, end_on_exit=True):
        yield
