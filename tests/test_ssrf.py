"""SSRF protection, on by default: at subscribe time and again at connect time."""

from __future__ import annotations

import ipaddress

import pytest
from flask import Flask

from flask_async_events.ssrf import AddressPolicy, parse_networks
from tests.appfactory import db, events
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import attempts, place_order, states, subscribe

FORBIDDEN = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.5.4/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://[::1]:8080/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[2002:7f00:1::]/hook", "loopback"),  # 6to4 around 127.0.0.1
    ("http://localhost:5000/hook", "loopback"),  # a name that resolves to 127.0.0.1
    ("http://0.0.0.0/hook", "private"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://100.64.0.1/hook", "reserved"),
    ("http://[fe80::1]/hook", "link-local"),
]


@pytest.fixture
def strict(env: AppEnv) -> Flask:
    return env.app(ASYNC_EVENTS_ALLOWED_NETWORKS=[])


@pytest.mark.parametrize(("url", "reason"), FORBIDDEN)
def test_internal_addresses_are_refused_at_subscribe_time(strict: Flask, url: str, reason: str) -> None:
    with strict.app_context(), pytest.raises(ValueError, match=f"recipient_url: .*{reason}"):
        events.subscribe("customer.created", url, verification_token="t")


def test_the_api_names_the_field_and_the_reason(strict: Flask) -> None:
    from tests.helpers import PREFIX, create, token

    response = create(strict.test_client(), token(strict, "t", "sales"), recipient_url="http://169.254.169.254/x")
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert message.startswith("recipient_url:") and "cloud metadata" in message
    assert "ASYNC_EVENTS_ALLOWED_NETWORKS" in message
    assert PREFIX


def test_public_addresses_and_allowed_networks_are_accepted(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_ALLOWED_NETWORKS=["10.0.0.0/8"])
    with app.app_context():
        events.subscribe("customer.created", "http://93.184.216.34/hook", verification_token="t")
        events.subscribe("customer.created", "http://10.1.2.3/hook", verification_token="t")
        with pytest.raises(ValueError, match="loopback"):
            events.subscribe("customer.created", "http://127.0.0.1/hook", verification_token="t")
        db.session.rollback()


def test_connect_time_check_blocks_what_subscribe_time_allowed(env: AppEnv, receiver: Receiver) -> None:
    permissive = env.app()  # the test app allows loopback
    subscribe(permissive, receiver.respond().replace("127.0.0.1", "localhost"))
    place_order(permissive)
    strict = env.app(ASYNC_EVENTS_ALLOWED_NETWORKS=[])  # the workers run without the allowance
    run_burst(strict)
    assert receiver.requests == []
    [attempt] = attempts(strict)
    assert attempt.error_class == "ForbiddenAddress" and "loopback" in attempt.response_data
    assert states(strict) == ["dead"]  # a policy refusal is not retried


def test_a_redirect_to_an_internal_address_is_not_followed(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond("/out", [307], headers={"Location": "http://169.254.169.254/latest/meta-data"}))
    place_order(app)
    run_burst(app)
    [attempt] = attempts(app)
    assert attempt.status_code == 307 and "not followed" in attempt.response_data
    assert states(app) == ["dead"]


@pytest.mark.parametrize(
    ("address", "allowed", "forbidden"),
    [
        ("8.8.8.8", (), False),
        ("2001:4860:4860::8888", (), False),
        ("127.0.0.1", ("127.0.0.0/8",), False),
        ("::ffff:127.0.0.1", ("127.0.0.0/8",), False),
        ("127.0.0.1", ("10.0.0.0/8",), True),
        ("2001::7f00:1", (), True),  # Teredo (reserved range) is never global
        ("::ffff:10.0.0.1", (), True),
    ],
)
def test_address_policy(address: str, allowed: tuple[str, ...], forbidden: bool) -> None:
    policy = AddressPolicy(parse_networks(allowed))
    assert (policy.reason(ipaddress.ip_address(address)) is not None) is forbidden


def test_bad_allowed_networks_fail_at_start_up(env: AppEnv) -> None:
    from flask_async_events.config import ConfigError

    with pytest.raises(ConfigError, match="ASYNC_EVENTS_ALLOWED_NETWORKS: 'ten' is not an IP network"):
        env.app(ASYNC_EVENTS_ALLOWED_NETWORKS=["ten"])
