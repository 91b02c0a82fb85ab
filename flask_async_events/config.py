"""The ``ASYNC_EVENTS_*`` configuration: defaults, parsing and start-up checks.

Everything is read once, at ``init_app``, into a frozen :class:`Settings`; a bad value fails
there with a message naming the key, not later inside a worker.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_async_events.errors import ConfigError
from flask_async_events.query import MAX_QUERY, MAX_TERMS, MAX_WILDCARDS, Limits
from flask_async_events.redis_connection import is_sentinel_url, parse_sentinel_url
from flask_async_events.ssrf import IPNetwork, parse_networks

PAYLOAD_FORMATS = ("data", "cloudevents")
# Other names the Magento module and its sinks use for a notifier.
NOTIFIER_ALIASES = {"event_bridge": "eventbridge"}

DEFAULTS: dict[str, Any] = {
    "ASYNC_EVENTS_REDIS_URL": None,
    "ASYNC_EVENTS_REDIS_OPTIONS": {},
    "ASYNC_EVENTS_DEFINITIONS_FILE": None,
    "ASYNC_EVENTS_PAYLOAD_FORMAT": "data",
    "ASYNC_EVENTS_SIGNATURE_HEADER": "x-magento-signature",
    "ASYNC_EVENTS_RETRY_SCHEDULE": [1, 4, 9, 16, 25],
    "ASYNC_EVENTS_RETRY_JITTER": 0.0,
    "ASYNC_EVENTS_RETRY_AFTER_MAX": 3600,
    "ASYNC_EVENTS_CONNECT_TIMEOUT": 5,
    "ASYNC_EVENTS_TIMEOUT": 15,
    "ASYNC_EVENTS_BATCH_SIZE": 500,
    "ASYNC_EVENTS_DELIVERY_THREADS": 32,
    "ASYNC_EVENTS_ENDPOINT_CONCURRENCY": 8,
    "ASYNC_EVENTS_CIRCUIT_FAILURES": 10,
    "ASYNC_EVENTS_CIRCUIT_COOLDOWN": 5,
    "ASYNC_EVENTS_CIRCUIT_MAX_COOLDOWN": 600,
    # A sweep every 2 s (one worker at a time) and a relay after 5 s keep what a lost worker leaves
    # behind (docs/reliability.md, "What a lost worker leaves behind") under 10 s.
    "ASYNC_EVENTS_MAINTENANCE_INTERVAL": 2,
    "ASYNC_EVENTS_RELAY_AFTER": 5,
    "ASYNC_EVENTS_DISABLE_AFTER": 5 * 24 * 3600,
    "ASYNC_EVENTS_PRUNE_AFTER": 0,
    "ASYNC_EVENTS_IDEMPOTENCY_WINDOW": 24 * 3600,
    "ASYNC_EVENTS_ENCRYPTION_KEYS": None,
    "ASYNC_EVENTS_EVENTBRIDGE_SOURCE": None,
    "ASYNC_EVENTS_EVENTBRIDGE_REGION": None,
    "ASYNC_EVENTS_EVENTBRIDGE_ENDPOINT_URL": None,
    "ASYNC_EVENTS_EVENTBRIDGE_BATCH_SIZE": 10,
    "ASYNC_EVENTS_SQS_REGION": None,
    "ASYNC_EVENTS_SQS_ENDPOINT_URL": None,
    "ASYNC_EVENTS_ALLOWED_NETWORKS": [],
    "ASYNC_EVENTS_URL_PREFIX": "/rest/V1",
    "ASYNC_EVENTS_METRICS_URL": "/async-events/metrics",
    "ASYNC_EVENTS_ADMIN_URL": "/async-events/admin",
    "ASYNC_EVENTS_PORTAL_URL": "/async-events/portal",
    "ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS": None,
    "ASYNC_EVENTS_JOURNAL_DIR": os.path.join(tempfile.gettempdir(), "flask-async-events"),
    "ASYNC_EVENTS_FILTER_LIMITS": {"length": 1000, "terms": 20, "wildcards": 10},
    "ASYNC_EVENTS_SEARCH_TIMEOUT": 5,
    "ASYNC_EVENTS_MAX_BODY": 1024 * 1024,
    "ASYNC_EVENTS_OWNER_TARGETS": {},
    "ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER": 100,
    "ASYNC_EVENTS_TEST_SENDS_PER_MINUTE": 10,
}
# A Content-Security-Policy source: a keyword, a scheme, or a host with an optional scheme, port and path.
_FRAME_SOURCE = re.compile(
    r"'self'|'none'|[a-z][a-z0-9+.-]*:|([a-z][a-z0-9+.-]*://)?(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:(\d{1,5}|\*))?(/[^\s;,']*)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one app. Times are in seconds."""

    redis_url: str | None
    redis_options: Mapping[str, Any]  # redis-py client arguments: TLS certificates, timeouts, sentinel_kwargs
    definitions_file: str | None
    payload_format: str
    signature_header: str
    retry_schedule: tuple[float, ...]
    retry_jitter: float
    retry_after_max: float
    connect_timeout: float
    timeout: float
    batch_size: int
    delivery_threads: int
    endpoint_concurrency: int
    circuit_failures: int  # consecutive retryable failures that open an endpoint's circuit (0: never)
    circuit_cooldown: float  # an open circuit's first cool-down, doubled on each reopening
    circuit_max_cooldown: float
    maintenance_interval: int
    relay_after: float
    disable_after: float
    prune_after: float
    idempotency_window: float  # a publish repeating an idempotency key within it creates nothing
    encryption_keys: tuple[str, ...]
    eventbridge_source: str | None
    eventbridge_region: str | None
    eventbridge_endpoint_url: str | None
    eventbridge_batch_size: int
    sqs_region: str | None
    sqs_endpoint_url: str | None
    allowed_networks: tuple[IPNetwork, ...]
    url_prefix: str
    metrics_url: str | None
    admin_url: str | None
    portal_url: str | None
    portal_frame_ancestors: tuple[str, ...]  # CSP sources that may embed the portal; () means 'self'
    journal_dir: str | None  # where workers keep the attempt journal's spool on local disk; None: not kept
    # What a non-admin owner may make the others pay for (README "Security"):
    filter_limits: Limits  # the size of a filter or a search
    search_timeout: float  # how long one statement of a search may run
    max_body: int  # bytes of a REST or portal request body
    owner_targets: Mapping[str, tuple[str, ...]]  # per notifier that acts with the host's credentials
    max_subscriptions_per_owner: int  # 0: no limit
    test_sends_per_minute: int  # pings and examples, per owner; 0: no limit

    @property
    def send_budget(self) -> float:
        """How long one deliver job keeps starting new sends before it hands the rest back."""
        return 2 * self.timeout

    @property
    def probe_window(self) -> float:
        """How long a circuit's probe may take: while it is out, the endpoint's other deliveries wait."""
        return self.connect_timeout + self.timeout + 1

    @property
    def job_timeout(self) -> int:
        """RQ job timeout: the send budget plus one whole attempt and room for the database."""
        return math.ceil(self.send_budget + self.connect_timeout + self.timeout + 10)

    @property
    def claim_lease(self) -> int:
        """How long a claimed delivery belongs to its job; longer than the job may run."""
        return self.job_timeout + 10


def _number(config: Mapping[str, Any], key: str, *, minimum: float, integer: bool = False) -> Any:
    value = config.get(key, DEFAULTS[key])
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{key} must be a number >= {minimum}, got {value!r}")
    if integer:
        if value != int(value):
            raise ConfigError(f"{key} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _split(value: Any) -> Any:
    """A list given as a string (from the environment): items separated by commas or spaces."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


def _schedule(config: Mapping[str, Any]) -> tuple[float, ...]:
    key = "ASYNC_EVENTS_RETRY_SCHEDULE"
    value = config.get(key, DEFAULTS[key])
    value = _split(value)
    try:
        delays = tuple(float(delay) for delay in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a list of delays in seconds, got {value!r}") from None
    if any(delay < 0 for delay in delays):
        raise ConfigError(f"{key} delays must be >= 0, got {value!r}")
    return delays


def _keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    key = "ASYNC_EVENTS_ENCRYPTION_KEYS"
    value = config.get(key)
    if value is None:
        secret = config.get("SECRET_KEY")
        if not secret:
            raise ConfigError(f"Set SECRET_KEY or {key}: verification tokens are encrypted at rest with it.")
        return (f"derive:{secret}",)
    value = _split(value)
    keys = tuple(str(item) for item in value)
    if not keys:
        raise ConfigError(f"{key} must list at least one key")
    return keys


def load_settings(config: Mapping[str, Any]) -> Settings:
    """Read and check every ``ASYNC_EVENTS_*`` key of a Flask config."""
    redis_url = config.get("ASYNC_EVENTS_REDIS_URL") or config.get("REDIS_URL")
    if redis_url and is_sentinel_url(redis_url):
        parse_sentinel_url(redis_url)
    redis_options = config.get("ASYNC_EVENTS_REDIS_OPTIONS") or {}
    if not isinstance(redis_options, Mapping):
        raise ConfigError(f"ASYNC_EVENTS_REDIS_OPTIONS must be a mapping of redis-py arguments, got {redis_options!r}")
    return Settings(
        redis_url=redis_url,
        redis_options=dict(redis_options),
        definitions_file=config.get("ASYNC_EVENTS_DEFINITIONS_FILE"),
        payload_format=_payload_format(config),
        signature_header=_signature_header(config),
        retry_schedule=_schedule(config),
        retry_jitter=_jitter(config),
        retry_after_max=_number(config, "ASYNC_EVENTS_RETRY_AFTER_MAX", minimum=0),
        connect_timeout=_number(config, "ASYNC_EVENTS_CONNECT_TIMEOUT", minimum=0.001),
        timeout=_number(config, "ASYNC_EVENTS_TIMEOUT", minimum=0.001),
        batch_size=_number(config, "ASYNC_EVENTS_BATCH_SIZE", minimum=1, integer=True),
        delivery_threads=_number(config, "ASYNC_EVENTS_DELIVERY_THREADS", minimum=1, integer=True),
        endpoint_concurrency=_number(config, "ASYNC_EVENTS_ENDPOINT_CONCURRENCY", minimum=1, integer=True),
        circuit_failures=_number(config, "ASYNC_EVENTS_CIRCUIT_FAILURES", minimum=0, integer=True),
        circuit_cooldown=_number(config, "ASYNC_EVENTS_CIRCUIT_COOLDOWN", minimum=0.1),
        circuit_max_cooldown=_number(config, "ASYNC_EVENTS_CIRCUIT_MAX_COOLDOWN", minimum=1),
        maintenance_interval=_number(config, "ASYNC_EVENTS_MAINTENANCE_INTERVAL", minimum=1, integer=True),
        relay_after=_number(config, "ASYNC_EVENTS_RELAY_AFTER", minimum=0),
        disable_after=_number(config, "ASYNC_EVENTS_DISABLE_AFTER", minimum=0),
        prune_after=_number(config, "ASYNC_EVENTS_PRUNE_AFTER", minimum=0),
        idempotency_window=_number(config, "ASYNC_EVENTS_IDEMPOTENCY_WINDOW", minimum=0),
        encryption_keys=_keys(config),
        eventbridge_source=config.get("ASYNC_EVENTS_EVENTBRIDGE_SOURCE"),
        eventbridge_region=config.get("ASYNC_EVENTS_EVENTBRIDGE_REGION"),
        eventbridge_endpoint_url=config.get("ASYNC_EVENTS_EVENTBRIDGE_ENDPOINT_URL"),
        eventbridge_batch_size=_batch_size(config),
        sqs_region=config.get("ASYNC_EVENTS_SQS_REGION"),
        sqs_endpoint_url=config.get("ASYNC_EVENTS_SQS_ENDPOINT_URL"),
        allowed_networks=_networks(config),
        url_prefix=_url_prefix(config),
        metrics_url=_optional_path(config, "ASYNC_EVENTS_METRICS_URL"),
        admin_url=_optional_path(config, "ASYNC_EVENTS_ADMIN_URL"),
        portal_url=_optional_path(config, "ASYNC_EVENTS_PORTAL_URL"),
        portal_frame_ancestors=_frame_ancestors(config),
        journal_dir=_journal_dir(config),
        filter_limits=_filter_limits(config),
        search_timeout=_number(config, "ASYNC_EVENTS_SEARCH_TIMEOUT", minimum=0.01),
        max_body=_number(config, "ASYNC_EVENTS_MAX_BODY", minimum=1024, integer=True),
        owner_targets=_owner_targets(config),
        max_subscriptions_per_owner=_number(
            config, "ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER", minimum=0, integer=True
        ),
        test_sends_per_minute=_number(config, "ASYNC_EVENTS_TEST_SENDS_PER_MINUTE", minimum=0, integer=True),
    )


def _payload_format(config: Mapping[str, Any]) -> str:
    payload_format = config.get("ASYNC_EVENTS_PAYLOAD_FORMAT", DEFAULTS["ASYNC_EVENTS_PAYLOAD_FORMAT"])
    if payload_format not in PAYLOAD_FORMATS:
        raise ConfigError(
            f"ASYNC_EVENTS_PAYLOAD_FORMAT must be one of {', '.join(PAYLOAD_FORMATS)}, got {payload_format!r}"
        )
    return str(payload_format)


def _signature_header(config: Mapping[str, Any]) -> str:
    header = config.get("ASYNC_EVENTS_SIGNATURE_HEADER", DEFAULTS["ASYNC_EVENTS_SIGNATURE_HEADER"])
    if not isinstance(header, str) or not header.strip():
        raise ConfigError("ASYNC_EVENTS_SIGNATURE_HEADER must be a header name")
    return header.strip().lower()


def _jitter(config: Mapping[str, Any]) -> float:
    jitter = _number(config, "ASYNC_EVENTS_RETRY_JITTER", minimum=0)
    if jitter > 1:
        raise ConfigError(f"ASYNC_EVENTS_RETRY_JITTER is a fraction between 0 and 1, got {jitter!r}")
    return float(jitter)


def _filter_limits(config: Mapping[str, Any]) -> Limits:
    """Limits on filters and searches, each a whole number from 1 to the parser's own cap; keys
    left out keep their defaults."""
    key = "ASYNC_EVENTS_FILTER_LIMITS"
    value = config.get(key, DEFAULTS[key])
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping such as {DEFAULTS[key]}, got {value!r}")
    caps = {"length": MAX_QUERY, "terms": MAX_TERMS, "wildcards": MAX_WILDCARDS}
    unknown = sorted(set(value) - set(caps))
    if unknown:
        raise ConfigError(f"{key}: unknown limit {unknown[0]!r}; the limits are {', '.join(caps)}")
    limits = {**DEFAULTS[key], **value}
    for name, cap in caps.items():
        limit = limits[name]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= cap:
            raise ConfigError(f"{key}: {name} must be a whole number from 1 to {cap}, got {limit!r}")
    return Limits(**limits)


def _owner_targets(config: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per notifier name, the glob patterns of targets a non-admin owner may give it."""
    key = "ASYNC_EVENTS_OWNER_TARGETS"
    value = config.get(key, DEFAULTS[key]) or {}
    example = '{"sqs": ["arn:aws:sqs:*:123456789012:customer-*"]}'
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must map notifier names to lists of target patterns, as in {example}; got {value!r}")
    targets: dict[str, tuple[str, ...]] = {}
    for name, patterns in value.items():
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not isinstance(name, str) or not isinstance(patterns, list | tuple):
            raise ConfigError(f"{key} must map notifier names to lists of target patterns, as in {example}")
        if not all(isinstance(pattern, str) and pattern for pattern in patterns):
            raise ConfigError(f"{key}[{name!r}]: every pattern must be a non-empty string, got {patterns!r}")
        targets[NOTIFIER_ALIASES.get(name.lower(), name.lower())] = tuple(patterns)
    return targets


def _journal_dir(config: Mapping[str, Any]) -> str | None:
    """A local folder for the attempt journal's spool, or empty to keep the journal in Redis only."""
    key = "ASYNC_EVENTS_JOURNAL_DIR"
    value = config.get(key, DEFAULTS[key])
    if value in (None, ""):
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{key} must be a folder path, or empty to keep the journal in Redis only, got {value!r}")
    return os.fspath(value)


def _frame_ancestors(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The pages that may embed the portal, as ``frame-ancestors`` sources (a string or a list)."""
    key = "ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS"
    value = config.get(key, DEFAULTS[key])
    sources = [] if value is None else _split(value)
    if not isinstance(sources, list | tuple) or not all(isinstance(source, str) for source in sources):
        raise ConfigError(f"{key} must be a list of origins such as 'https://shop.example.com', got {value!r}")
    sources = [f"'{source}'" if source in ("self", "none") else source for source in sources]
    for source in sources:
        if not _FRAME_SOURCE.fullmatch(source):
            raise ConfigError(
                f"{key}: {source!r} is not a frame-ancestors source; give origins such as"
                " 'https://shop.example.com' or 'https://*.example.com', or 'self'"
            )
    return tuple(sources)


def _networks(config: Mapping[str, Any]) -> tuple[IPNetwork, ...]:
    key = "ASYNC_EVENTS_ALLOWED_NETWORKS"
    value = config.get(key, DEFAULTS[key])
    value = _split(value)
    try:
        return parse_networks(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _url_prefix(config: Mapping[str, Any]) -> str:
    key = "ASYNC_EVENTS_URL_PREFIX"
    value = config.get(key, DEFAULTS[key])
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{key} must be a path starting with '/', got {value!r}")
    return value.rstrip("/")


def _optional_path(config: Mapping[str, Any], key: str) -> str | None:
    """A URL path for something that can be turned off (empty or None)."""
    value = config.get(key, DEFAULTS[key])
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{key} must be a path starting with '/', or empty to turn it off, got {value!r}")
    return value.rstrip("/") or "/"


def _batch_size(config: Mapping[str, Any]) -> int:
    key = "ASYNC_EVENTS_EVENTBRIDGE_BATCH_SIZE"
    size: int = _number(config, key, minimum=1, integer=True)
    if size > 10:
        raise ConfigError(f"{key} is at most 10 (PutEvents' limit), got {size}")
    return size
