"""How this package reaches Redis: a ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, or the current
master of a Sentinel service (``redis+sentinel://``, ``rediss+sentinel://``).

Every Redis user of the package (web processes, the nudger, workers, RQ's scheduler, the journal)
gets its client from :func:`connect` or :func:`clone`, so all of them go through the Sentinel's
current master and follow a failover: a Sentinel-managed connection asks the sentinels where the
master is each time it connects, and drops itself when the server it reached has become a replica.

RQ does not run on Redis Cluster (its jobs span several keys in one transaction); use Sentinel, or a
managed Redis with a single primary endpoint and automatic failover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from redis import ConnectionPool, Redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from flask_async_events.errors import ConfigError

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
DEFAULT_SENTINEL_PORT = 26379
CLIENT_DEFAULTS: dict[str, Any] = {"socket_connect_timeout": 2, "health_check_interval": 30}
KEY = "ASYNC_EVENTS_REDIS_URL"


@dataclass(frozen=True)
class SentinelService:
    """Where a ``redis+sentinel://`` URL points: the sentinels to ask, the service, and its database."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelService:
    """``redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]``, checked; the error names
    the setting and what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SENTINEL_SCHEMES:
        raise ConfigError(f"{KEY}: {scheme!r} is not a Sentinel scheme ({', '.join(SENTINEL_SCHEMES)})")
    if "?" in rest or "#" in rest:
        raise ConfigError(f"{KEY}: a Sentinel URL takes no query; put client options in ASYNC_EVENTS_REDIS_OPTIONS")
    credentials, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    username, password = _credentials(credentials)
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ConfigError(f"{KEY}: name the Sentinel service after the hosts: redis+sentinel://host:port/SERVICE[/DB]")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ConfigError(f"{KEY}: the database after the service must be a number, got {parts[1]!r}")
        db = int(parts[1])
    return SentinelService(
        sentinels=tuple(_host(item) for item in hosts.split(",")),
        service=parts[0],
        db=db,
        username=username,
        password=password,
        tls=SENTINEL_SCHEMES[scheme.lower()],
    )


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    if not colon:  # redis://secret@host means a password, as redis-py reads it
        return None, unquote(user)
    return unquote(user) or None, unquote(password)


def _host(item: str) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise ConfigError(f"{KEY}: an empty sentinel address in the list of hosts")
    if item.startswith("["):  # [::1]:26379
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{KEY}: {item!r} has no valid port")
    return host, int(port)


def connect(url: str, options: Mapping[str, Any] | None = None) -> Redis:
    """A client for ``url``; ``options`` are redis-py client arguments (``ssl_ca_certs``, ``ssl_certfile``,
    ``socket_timeout``, ...), and for Sentinel also ``sentinel_kwargs`` for the sentinels themselves."""
    settings = {**CLIENT_DEFAULTS, **(options or {})}
    if not is_sentinel_url(url):
        try:
            return Redis.from_url(url, **settings)
        except ValueError as exc:
            raise ConfigError(f"{KEY}: {exc}") from None
    service = parse_sentinel_url(url)
    sentinel_kwargs = settings.pop("sentinel_kwargs", None)
    if service.tls:
        settings["ssl"] = True
    if sentinel_kwargs is None:  # the sentinels speak TLS and time out as the master does
        sentinel_kwargs = {key: value for key, value in settings.items() if key.startswith(("socket_", "ssl"))}
    sentinel = Sentinel(list(service.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(
        service.service, db=service.db, username=service.username, password=service.password, **settings
    )


def clone(connection: Redis, **overrides: Any) -> Redis:
    """A new client with a pool of its own to wherever ``connection`` goes (the same Sentinel service
    included), its connection arguments changed by ``overrides``. The client owns its pool: closing
    it closes the pool's connections."""
    pool = connection.connection_pool
    kwargs = {**pool.connection_kwargs, **overrides}
    if isinstance(pool, SentinelConnectionPool):
        kwargs.pop("connection_pool", None)  # the proxy of the original pool; the new pool sets its own
        return Redis.from_pool(
            SentinelConnectionPool(
                pool.service_name, pool.sentinel_manager, connection_class=pool.connection_class, **kwargs
            )
        )
    return Redis.from_pool(ConnectionPool(connection_class=pool.connection_class, **kwargs))
