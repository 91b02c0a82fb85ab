"""Configuration: the defaults, and every bad value named by its key."""

from __future__ import annotations

import pytest

from flask_async_events.config import ConfigError, load_settings


def test_defaults_are_the_magento_modules() -> None:
    settings = load_settings({"SECRET_KEY": "x"})
    assert settings.retry_schedule == (1, 4, 9, 16, 25)
    assert (settings.connect_timeout, settings.timeout) == (5, 15)
    assert settings.signature_header == "x-magento-signature"
    assert settings.timeout < settings.job_timeout < settings.claim_lease
    assert (settings.circuit_cooldown, settings.circuit_max_cooldown) == (5, 600)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ASYNC_EVENTS_PAYLOAD_FORMAT", "xml", "ASYNC_EVENTS_PAYLOAD_FORMAT"),
        ("ASYNC_EVENTS_RETRY_SCHEDULE", ["soon"], "ASYNC_EVENTS_RETRY_SCHEDULE"),
        ("ASYNC_EVENTS_RETRY_SCHEDULE", [-1], "ASYNC_EVENTS_RETRY_SCHEDULE"),
        ("ASYNC_EVENTS_RETRY_JITTER", 2, "ASYNC_EVENTS_RETRY_JITTER"),
        ("ASYNC_EVENTS_TIMEOUT", 0, "ASYNC_EVENTS_TIMEOUT"),
        ("ASYNC_EVENTS_BATCH_SIZE", 1.5, "ASYNC_EVENTS_BATCH_SIZE"),
        ("ASYNC_EVENTS_BATCH_SIZE", "many", "ASYNC_EVENTS_BATCH_SIZE"),
        ("ASYNC_EVENTS_ENDPOINT_CONCURRENCY", True, "ASYNC_EVENTS_ENDPOINT_CONCURRENCY"),
        ("ASYNC_EVENTS_CIRCUIT_COOLDOWN", 0, "ASYNC_EVENTS_CIRCUIT_COOLDOWN"),
    ],
)
def test_bad_configuration_names_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"SECRET_KEY": "x", key: value})


def test_a_secret_is_required_to_encrypt_tokens() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY or ASYNC_EVENTS_ENCRYPTION_KEYS"):
        load_settings({})


def test_schedule_from_an_environment_string() -> None:
    assert load_settings({"SECRET_KEY": "x", "ASYNC_EVENTS_RETRY_SCHEDULE": "5, 300 1800"}).retry_schedule == (
        5,
        300,
        1800,
    )
