"""The http notifier's reading of an answer, from a real receiver: status codes, Retry-After in
both its forms, the charset of the excerpt, a redirect's target."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from flask_async_events.notifiers.base import Message, NotifyResult, Recipient
from flask_async_events.notifiers.http import HttpNotifier, classify
from flask_async_events.ssrf import AddressPolicy

LOOPBACK = AddressPolicy([ipaddress.ip_network("127.0.0.0/8")])
TEXT = "text/plain; charset="


@pytest.mark.parametrize(
    ("status", "success", "retryable", "gone"),
    [
        (200, True, False, False),
        (204, True, False, False),
        (301, False, False, False),
        (400, False, False, False),
        (404, False, False, False),
        (408, False, True, False),
        (410, False, False, True),
        (429, False, True, False),
        (500, False, True, False),
        (503, False, True, False),
    ],
)
def test_http_outcomes(status: int, success: bool, retryable: bool, gone: bool) -> None:
    result = classify(status, "", 7)
    assert (result.success, result.retryable, result.gone) == (success, retryable, gone)
    assert result.retry_after == (7 if retryable else None)


def send(notifier: HttpNotifier, url: str) -> NotifyResult:
    recipient = Recipient(1, "order.placed", url, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "http", 0)
    message = Message("d-1", "e-1", "order.placed", '{"id": 1}', "application/json", datetime.now(UTC), 1)
    return notifier.notify(recipient, message)


def answer(httpserver: HTTPServer, path: str, response: Response) -> str:
    httpserver.expect_request(path).respond_with_response(response)
    return httpserver.url_for(path)


def test_retry_after_in_seconds_or_as_a_date_and_none_on_the_next_answer(httpserver: HTTPServer) -> None:
    notifier = HttpNotifier(policy=LOOPBACK)  # one handle (this thread's) for every answer below
    in_seconds = answer(httpserver, "/seconds", Response("busy", 429, {"Retry-After": "120"}))
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    as_date = answer(httpserver, "/date", Response("down", 503, {"Retry-After": when}))
    garbage = answer(httpserver, "/garbage", Response("down", 503, {"Retry-After": "soon"}))
    without = answer(httpserver, "/without", Response("down", 503))

    assert send(notifier, in_seconds).retry_after == 120
    dated = send(notifier, as_date).retry_after
    assert dated is not None and 85 <= dated <= 91
    assert send(notifier, garbage).retry_after is None
    assert send(notifier, in_seconds).retry_after == 120
    assert send(notifier, without).retry_after is None  # not the last answer's


def test_the_excerpt_is_read_in_the_answers_charset(httpserver: HTTPServer) -> None:
    notifier = HttpNotifier(policy=LOOPBACK)
    latin = answer(httpserver, "/latin", Response("café".encode("latin-1"), 400, {"Content-Type": TEXT + "latin-1"}))
    unknown = answer(httpserver, "/unknown", Response("café".encode(), 200, {"Content-Type": TEXT + "nope"}))
    headerless = answer(httpserver, "/headerless", Response("café".encode(), 200, {"Content-Type": ""}))

    assert send(notifier, latin).response_data == "café"
    assert send(notifier, unknown).response_data == "café"  # a charset Python does not know: UTF-8
    assert send(notifier, headerless).response_data == "café"


def test_a_redirect_is_not_followed_and_names_its_target(httpserver: HTTPServer) -> None:
    notifier = HttpNotifier(policy=LOOPBACK)
    moved = answer(httpserver, "/moved", Response("", 302, {"Location": "/elsewhere"}))
    nowhere = answer(httpserver, "/nowhere", Response("", 301))

    result = send(notifier, moved)
    assert (result.success, result.retryable, result.status_code) == (False, False, 302)
    assert result.response_data == f"Redirect to {httpserver.url_for('/elsewhere')!r} not followed"
    assert send(notifier, nowhere).response_data == "Redirect not followed"
    assert all(request.path != "/elsewhere" for request, _ in httpserver.log)


def test_an_answer_with_many_headers_is_read_whole(httpserver: HTTPServer) -> None:
    headers = {f"X-Filler-{index}": "x" * 100 for index in range(200)}
    crowded = answer(httpserver, "/crowded", Response("fine", 200, {**headers, "Content-Type": "text/plain"}))

    result = send(HttpNotifier(policy=LOOPBACK), crowded)

    assert (result.success, result.status_code, result.response_data) == (True, 200, "fine")
