"""OpenTelemetry: one event followed from the request that published it to the attempts that delivered
it, with the SDK's in-memory exporter; and nothing at all when tracing is off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flask_async_events import tracing
from tests.conftest import ROOT, AppEnv, Receiver, drain, run_burst
from tests.helpers import MAGENTO_TOKEN, deliveries, place_order, states, subscribe

EXPORTER = InMemorySpanExporter()
HEADER_SECRET = "header-value-kept-out-of-traces"


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    """The SDK, as a host app sets it up (once per process: OpenTelemetry allows one global provider)."""
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(sdk)


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def _named(name: str) -> list[ReadableSpan]:
    return [span for span in EXPORTER.get_finished_spans() if span.name == name]


def test_an_attempt_is_a_child_of_the_publishing_request_and_its_traceparent_names_it(
    env: AppEnv, receiver: Receiver
) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0.2], ASYNC_EVENTS_RETRY_JITTER=0)
    subscription_id = subscribe(app, receiver.respond("/hook", [503, 200]), headers={"X-Api-Key": HEADER_SECRET})
    tracer = trace.get_tracer("host-app")
    with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as request:
        place_order(app)
    drain(app, lambda: states(app) == ["delivered"])

    trace_id = request.get_span_context().trace_id
    [publish] = _named("async_events.publish")
    assert publish.kind is SpanKind.PRODUCER and publish.parent is not None
    assert publish.parent.span_id == request.get_span_context().span_id
    assert publish.attributes is not None and publish.attributes["async_events.event"] == "sales.order.created"
    failed, delivered = sorted(_named("async_events.attempt"), key=lambda span: span.start_time or 0)
    for attempt in (failed, delivered):
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.context is not None and attempt.context.trace_id == trace_id  # the request's trace
        assert attempt.parent is not None and attempt.parent.span_id == publish.context.span_id
        assert attempt.attributes is not None
        assert attempt.attributes["async_events.subscription_id"] == subscription_id
        assert str(attempt.attributes["async_events.endpoint"]).startswith("http://127.0.0.1:")
        assert attempt.attributes["async_events.delivery_uuid"] == deliveries(app)[0].uuid
    assert failed.attributes is not None and delivered.attributes is not None
    assert (failed.attributes["http.response.status_code"], failed.attributes["async_events.outcome"]) == (503, "retry")
    assert failed.status.status_code is StatusCode.ERROR
    assert (delivered.attributes["http.response.status_code"], delivered.attributes["async_events.outcome"]) == (
        200,
        "delivered",
    )
    assert isinstance(delivered.attributes["async_events.duration_ms"], int)

    # Each request carries its own attempt's traceparent, and no baggage.
    for request_seen, attempt in zip(receiver.requests, (failed, delivered), strict=True):
        version, trace_hex, span_hex, flags = request_seen.headers["Traceparent"].split("-")
        assert (version, int(trace_hex, 16), int(span_hex, 16)) == ("00", trace_id, attempt.context.span_id)
        assert int(flags, 16) & 1  # sampled
        assert "Baggage" not in request_seen.headers

    # The worker's jobs link to the event they handled.
    triggers = _named("async_events.trigger")
    assert all(span.kind is SpanKind.CONSUMER for span in triggers)
    assert [link.context.span_id for span in triggers for link in span.links] == [publish.context.span_id]
    delivers = _named("async_events.deliver")
    assert delivers and all(span.kind is SpanKind.CONSUMER for span in delivers)
    assert all(link.context.span_id == publish.context.span_id for span in delivers for link in span.links)
    assert any(span.links for span in delivers)

    everything = repr([(span.name, dict(span.attributes or {})) for span in EXPORTER.get_finished_spans()])
    for secret in (MAGENTO_TOKEN, HEADER_SECRET, "/hook"):
        assert secret not in everything


def test_an_event_published_outside_any_trace_starts_its_own(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    place_order(app)
    run_burst(app)
    [publish] = _named("async_events.publish")
    [attempt] = _named("async_events.attempt")
    assert publish.parent is None  # the root of its own trace
    assert attempt.parent is not None and attempt.parent.span_id == publish.context.span_id
    assert receiver.requests[0].headers["Traceparent"].split("-")[2] == f"{attempt.context.span_id:016x}"


def test_with_tracing_off_no_span_no_context_and_no_traceparent(
    env: AppEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "ENABLED", False)  # as without the otel extra
    app = env.app()
    subscribe(app, receiver.respond())
    with trace.get_tracer("host-app").start_as_current_span("POST /orders"):
        place_order(app)
    run_burst(app)
    assert [span.name for span in EXPORTER.get_finished_spans()] == ["POST /orders"]
    assert "Traceparent" not in receiver.requests[0].headers
    with app.app_context():
        from flask_async_events.models import Event
        from tests.appfactory import db

        assert db.session.scalars(db.select(Event.trace_context)).all() == [None]


def test_a_stored_context_that_is_not_a_trace_context_is_ignored() -> None:
    for stored in (None, "", "not json", "[1, 2]", '{"traceparent": "garbage"}'):
        attempt, headers = tracing.start_attempt(stored, lambda: {"async_events.attempt": 1})
        assert attempt.parent is None and dict(headers)["traceparent"].startswith("00-")
        attempt.end()


def test_without_a_tracer_provider_no_span_is_made_but_the_publishers_context_is_carried_on() -> None:
    code = (  # a fresh process: the API installed, no SDK set up
        "from flask_async_events import tracing\n"
        'stored = \'{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}\'\n'
        "asked = []\n"
        "attempt, headers = tracing.start_attempt(stored, lambda: asked.append(1) or {})\n"
        "assert attempt is None and asked == [], (attempt, asked)\n"
        "assert dict(headers)['traceparent'] == '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', headers\n"
        "assert tracing.start_attempt(None, lambda: asked.append(1) or {}) == (None, ()) and asked == []\n"
        "from opentelemetry import trace\n"
        "ids = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331\n"
        "context = trace.SpanContext(*ids, True, trace.TraceFlags(1))\n"
        "with trace.use_span(trace.NonRecordingSpan(context)), tracing.span('async_events.publish', {}):\n"
        "    assert tracing.current_context() == stored.replace(' ', ''), tracing.current_context()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_without_the_otel_extra_the_package_imports_nothing_of_opentelemetry() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # as if it were not installed
        "from flask_async_events import tracing\n"
        "assert tracing.ENABLED is False\n"
        "assert tracing.current_context() is None and tracing.start_attempt('{}', dict) == (None, ())\n"
        "with tracing.span('x', {}):\n    pass\n"
        "tracing.link_current(['{}'])\n"
        "import flask_async_events.delivery.deliver, flask_async_events.delivery.recording\n"
        "assert not [name for name in sys.modules if name.startswith('opentelemetry.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
