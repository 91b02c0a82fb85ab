"""Redis URLs: Sentinel URLs parsed and refused by name, and ``rediss://`` against a real TLS redis-server."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.common import redis_server_command
from bench.sentinel import free_port
from flask_async_events.config import load_settings
from flask_async_events.errors import ConfigError
from flask_async_events.redis_connection import SentinelService, connect, parse_sentinel_url
from flask_async_events.state import get_state
from tests.conftest import AppEnv, Receiver, drain, redis_server_binary
from tests.helpers import place_order, states, subscribe


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-3/orders",
            SentinelService((("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", 26379)), "orders"),
        ),
        (
            "rediss+sentinel://app:s%40cret@[::1]:5000/orders/3",
            SentinelService((("::1", 5000),), "orders", db=3, username="app", password="s@cret", tls=True),
        ),
        ("redis+sentinel://:pw@h:1/svc", SentinelService((("h", 1),), "svc", password="pw")),
        ("redis+sentinel://pw@h:1/svc", SentinelService((("h", 1),), "svc", password="pw")),
    ],
)
def test_sentinel_urls_name_the_sentinels_the_service_and_the_database(url: str, expected: SentinelService) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h:26379", "name the Sentinel service"),
        ("redis+sentinel://h:26379/", "name the Sentinel service"),
        ("redis+sentinel://h:26379/svc/x", "must be a number"),
        ("redis+sentinel://h:26379/svc/0/more", "name the Sentinel service"),
        ("redis+sentinel://h:port/svc", "no valid port"),
        ("redis+sentinel://h:70000/svc", "no valid port"),
        ("redis+sentinel://h:1,,h:2/svc", "empty sentinel address"),
        ("redis+sentinel://h:1/svc?ssl_cert_reqs=none", "ASYNC_EVENTS_REDIS_OPTIONS"),
    ],
)
def test_a_bad_sentinel_url_is_refused_at_start_up_naming_the_setting(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="ASYNC_EVENTS_REDIS_URL") as refused:
        load_settings({"ASYNC_EVENTS_REDIS_URL": url, "SECRET_KEY": "k"})
    assert says in str(refused.value)


def test_redis_options_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="ASYNC_EVENTS_REDIS_OPTIONS"):
        load_settings({"ASYNC_EVENTS_REDIS_OPTIONS": "ssl_ca_certs=/etc/ca.pem", "SECRET_KEY": "k"})


def test_an_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ASYNC_EVENTS_REDIS_URL"):
        connect("memcached://127.0.0.1:11211")


# --- TLS ---------------------------------------------------------------------------------------


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "redis.crt", folder / "redis.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server that speaks TLS only, on a loopback port; its URL and its CA certificate."""
    cert, key = _certificate(tmp_path)
    port = free_port()
    tls = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    process = subprocess.Popen(
        redis_server_command(redis_server_binary(), tmp_path, "--port", "0", "--bind", "127.0.0.1", *tls),
        stdout=subprocess.DEVNULL,
    )
    url = f"rediss://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(cert))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url, cert
    process.terminate()
    process.wait(10)


def test_a_rediss_url_with_the_ca_in_the_options_delivers(
    env: AppEnv, receiver: Receiver, tls_redis: tuple[str, Path]
) -> None:
    url, cert = tls_redis
    env.redis_url = url
    app = env.app(ASYNC_EVENTS_REDIS_OPTIONS={"ssl_ca_certs": str(cert)})
    subscribe(app, receiver.respond())
    place_order(app)
    drain(app, lambda: states(app) == ["delivered"])
    assert len(receiver.requests) == 1
    assert get_state(app).queues.connection.connection_pool.connection_kwargs["ssl_ca_certs"] == str(cert)


def test_a_rediss_server_whose_certificate_is_not_trusted_is_refused(tls_redis: tuple[str, Path]) -> None:
    url, _cert = tls_redis
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        connect(url).ping()
