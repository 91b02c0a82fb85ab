"""OpenTelemetry spans, when the ``otel`` extra (``opentelemetry-api``) is installed; without it every
function here is a check of one constant.

The flow of one event in a trace: ``async_events.publish`` (a PRODUCER span inside the host's request)
stores its W3C trace context with the event in the outbox; each ``async_events.attempt`` (CLIENT) is
a child of it, so the attempts appear in the publishing request's trace whichever worker made them;
the worker's ``async_events.trigger`` and ``async_events.deliver`` jobs (CONSUMER) link to the
events they handled. Each webhook request carries the attempt's ``traceparent``.

Only the W3C ``traceparent`` and ``tracestate`` travel: never baggage (the host's baggage is not for
third parties), and no span holds a secret, a header value or a URL's path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed
    ENABLED = False
else:
    ENABLED = True
    PROPAGATOR = TraceContextTextMapPropagator()

TRACER = "flask_async_events"
Attributes = Mapping[str, str | int | float | bool]


def _recording() -> bool:
    """Whether a span can record anything: the host has set up a tracer provider (an SDK). Before
    that every span is a no-op that only carries its parent's context on, so none need be made:
    not one per attempt, job and publish."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


@cache
def _tracer() -> Any:
    """The package's tracer, made once: before the host sets its provider it is a proxy that follows
    the provider set later, as OpenTelemetry intends a module's tracer to be."""
    from flask_async_events.version import __version__

    return trace.get_tracer(TRACER, __version__)


def current_context() -> str | None:
    """The current span's trace context as stored with an event (JSON), or None without a span."""
    if not ENABLED or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return json.dumps(carrier, separators=(",", ":"))


def _stored(context: str | None) -> Any:
    """The OpenTelemetry context of a stored trace context, or None if it is missing or unreadable."""
    if not context:
        return None
    try:
        carrier = json.loads(context)
    except ValueError:
        return None
    if not isinstance(carrier, dict):
        return None
    extracted = PROPAGATOR.extract(carrier)
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


@contextmanager
def span(
    name: str, attributes: Attributes, *, kind: str = "INTERNAL", links: Iterable[str | None] = ()
) -> Iterator[None]:
    """A span around a block, current inside it; ``links`` are stored trace contexts it links to."""
    if not ENABLED or not _recording():
        yield
        return
    with _tracer().start_as_current_span(name, kind=SpanKind[kind], attributes=attributes, links=_links(links)):
        yield


def link_current(links: Iterable[str | None]) -> None:
    """Link the current span to these stored trace contexts (a job learns its events once it has read them)."""
    if ENABLED and _recording():
        current = trace.get_current_span()
        for link in _links(links):
            current.add_link(link.context)


def _links(stored: Iterable[str | None]) -> list[Any]:
    linked = []
    for item in dict.fromkeys(stored):  # one link per distinct context
        context = _stored(item)
        if context is not None:
            linked.append(Link(trace.get_current_span(context).get_span_context()))
    return linked


def start_attempt(stored: str | None, attributes: Callable[[], Attributes]) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """Start the span of one attempt, a child of the publishing request's span when the event has one;
    return it and the headers that carry it to the receiver (``traceparent``). A span that records
    nothing (no SDK set up in this process) is not kept, and ``attributes`` is asked only of one
    that records: its headers still carry the publisher's context on."""
    if not ENABLED or (not stored and not _recording()):
        return None, ()
    attempt = _tracer().start_span("async_events.attempt", context=_stored(stored), kind=SpanKind.CLIENT)
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(attempt))
    if not attempt.is_recording():
        return None, tuple(carrier.items())
    attempt.set_attributes(attributes())
    return attempt, tuple(carrier.items())


def end_attempt(attempt: Any, attributes: Mapping[str, Any], *, failed: bool) -> None:
    """End an attempt's span with what happened; a failed attempt's status is ERROR."""
    attempt.set_attributes({key: value for key, value in attributes.items() if value is not None})
    if failed:
        attempt.set_status(Status(StatusCode.ERROR, str(attributes.get("async_events.error") or "failed")))
    attempt.end()
