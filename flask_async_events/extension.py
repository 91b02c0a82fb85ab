"""``AsyncEvents``: the Flask extension that defines events, publishes them and wires the parts."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

from flask import Flask, current_app
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy

from flask_async_events.admin import register_admin
from flask_async_events.api import register_api
from flask_async_events.auth import Authorizer
from flask_async_events.config import Settings, load_settings
from flask_async_events.crypto import SecretBox
from flask_async_events.definitions import (
    EventDefinition,
    EventRegistry,
    load_definitions_file,
    normalise_event_name,
)
from flask_async_events.delivery.dialects import has_row_locks
from flask_async_events.delivery.operational import PREFIX as OPERATIONAL_PREFIX
from flask_async_events.delivery.operational import define as define_operational_events
from flask_async_events.delivery.operational import is_operational
from flask_async_events.delivery.outbox import install_session_hooks, publish_event
from flask_async_events.errors import ConfigError, InvalidArguments, NotSetUp
from flask_async_events.metrics import metrics_view
from flask_async_events.models import Delivery, Subscription
from flask_async_events.notifiers.base import Notifier
from flask_async_events.notifiers.eventbridge import EventBridgeNotifier
from flask_async_events.notifiers.http import HttpNotifier
from flask_async_events.notifiers.plugins import load_entry_point_notifiers
from flask_async_events.notifiers.sqs import SqsNotifier
from flask_async_events.nudger import Nudger
from flask_async_events.operations.replay import replay
from flask_async_events.operations.rotation import DEFAULT_GRACE, Rotation, rotate_secret
from flask_async_events.operations.subscriptions import create_subscription, has_subscribers
from flask_async_events.portal import portal_link, register_portal
from flask_async_events.portal.links import DEFAULT_EXPIRES_IN
from flask_async_events.queues import Queues, connect_redis
from flask_async_events.signing import generate_secret
from flask_async_events.ssrf import AddressPolicy
from flask_async_events.state import EXTENSION_KEY, AppState, get_state

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("flask_async_events")


class AsyncEvents:
    """Reliable, signed, asynchronous events for a Flask app.

    ``AsyncEvents(app, db=db)`` or ``events = AsyncEvents()`` then ``events.init_app(app, db=db)``.
    Events defined with :meth:`event` and notifiers registered with :meth:`register_notifier`
    apply to every app this object is set up on.
    """

    def __init__(self, app: Flask | None = None, db: SQLAlchemy | None = None, api: Api | None = None) -> None:
        self._definitions = EventRegistry()
        self._notifiers: dict[str, Notifier] = {}
        self._authorizer: Authorizer | None = None
        self._db = db
        if app is not None:
            self.init_app(app, db=db, api=api)

    def event(self, name: str, *, resources: Iterable[str] = (), description: str = "") -> Callable[[F], F]:
        """Define an event whose payload the decorated function (the "service") returns."""
        event_name = normalise_event_name(name)

        def register(service: F) -> F:
            origin = f"@event on {service.__module__}.{service.__qualname__}"
            self._definitions.add(EventDefinition(event_name, service, tuple(resources), description, origin))
            return service

        return register

    def register_notifier(self, name: str, notifier: Notifier) -> None:
        """Make ``notifier`` handle subscriptions whose ``metadata`` is ``name``."""
        if not callable(getattr(notifier, "notify", None)):
            raise InvalidArguments(f"notifier {name!r} must have a notify(recipient, message) method")
        self._notifiers[name.strip().lower()] = notifier

    def authorize(self, func: Authorizer) -> Authorizer:
        """Replace the REST API's bearer tokens with the host's own check.

        ``func(request)`` returns a :class:`~flask_async_events.auth.Principal` (whose ``owner``
        key marks the subscriptions it creates) or None to refuse the request with a 401.
        """
        self._authorizer = func
        return func

    def init_app(self, app: Flask, db: SQLAlchemy | None = None, api: Api | None = None) -> None:
        """Set the extension up on ``app``; every configuration error is raised here.

        ``api``: the host's flask-smorest ``Api`` to mount the REST API on; without it the
        package makes its own, whose JSON error handlers apply to the REST API only.
        """
        if EXTENSION_KEY in app.extensions:
            raise NotSetUp("flask-async-events is already set up on this app; call init_app once per app")
        settings = load_settings(app.config)
        database = _setup_database(app, db or self._db)
        definitions = self._definitions.copy()
        if settings.definitions_file:
            load_definitions_file(os.path.join(app.root_path, settings.definitions_file), definitions)
        reserved = [definition.name for definition in definitions if is_operational(definition.name)]
        if reserved:
            raise ConfigError(
                f"event {reserved[0]!r}: names starting with {OPERATIONAL_PREFIX!r} are flask-async-events'"
                " own operational events"
            )
        define_operational_events(definitions)
        queues = Queues(
            connect_redis(settings.redis_url, app.instance_path, settings.redis_options),
            job_timeout=settings.job_timeout,
            batch_size=settings.batch_size,
        )
        with app.app_context():
            row_locks = has_row_locks(database.session)
        app.extensions[EXTENSION_KEY] = AppState(
            settings=settings,
            db=database,
            definitions=definitions,
            queues=queues,
            box=SecretBox(settings.encryption_keys),
            nudger=Nudger(partial(queues.announce, row_locks=row_locks)),
            app_notifiers={**_builtin_notifiers(app, settings), **load_entry_point_notifiers(app)},
            registered_notifiers=self._notifiers,
            authorizer=lambda: self._authorizer,
        )
        install_session_hooks(database.session)
        register_api(app, settings.url_prefix, api)
        if settings.metrics_url:
            app.add_url_rule(settings.metrics_url, "async_events_metrics", metrics_view)
        if settings.admin_url:
            register_admin(app, settings.admin_url)
        if settings.portal_url:
            register_portal(app, settings.portal_url)
        from flask_async_events.cli import cli

        app.cli.add_command(cli)

    def publish(self, name: str, *, store_id: int = 0, idempotency_key: str | None = None, **arguments: Any) -> str:
        """Write an event into the current ``db.session``; it leaves after the outermost commit.

        Returns the event's id. An undefined event, a bad store id or arguments the service does
        not accept raise ``ValueError``/``TypeError`` here, never later in a worker. A second
        publish of ``name`` with the same ``idempotency_key`` within
        ``ASYNC_EVENTS_IDEMPOTENCY_WINDOW`` (also from another process, also racing) creates
        nothing and returns the first event's id.
        """
        return publish_event(get_state(), name, store_id, arguments, idempotency_key)

    def has_subscribers(self, name: str, store_id: int = 0) -> bool:
        """Whether anyone would receive ``name`` published for ``store_id`` (wildcards included)."""
        return has_subscribers(get_state().db.session, name, store_id)

    def subscribe(
        self,
        event_name: str,
        recipient_url: str,
        *,
        verification_token: str,
        metadata: str = "http",
        store_id: int = 0,
        rate_limit: float | None = None,
        headers: Mapping[str, str] | None = None,
        filter: str | None = None,
        owner: str | None = None,
    ) -> Subscription:
        """Add a subscription to the current session (the caller commits). ``rate_limit``: at
        most that many deliveries per second to it, across all workers (None: no limit);
        ``headers``: extra request headers sent with every delivery; ``filter``: a query (the
        attempt-log search's language) an event must match to be delivered to it; ``owner``: the
        customer it belongs to (``"customer:42"``), who then manages it in the portal."""
        return create_subscription(
            get_state(),
            event_name=event_name,
            recipient_url=recipient_url,
            verification_token=verification_token,
            metadata=metadata,
            store_id=store_id,
            rate_limit=rate_limit,
            headers=headers,
            filter=filter,
            owner=owner,
        )

    def rotate_secret(
        self, subscription: Subscription, *, verification_token: str | None = None, grace_period: float = DEFAULT_GRACE
    ) -> Rotation:
        """Give ``subscription`` a new verification token (a new ``whsec_`` secret if none is
        given); the old one keeps signing beside it for ``grace_period`` seconds (the caller commits)."""
        return rotate_secret(get_state(), subscription, token=verification_token, grace=grace_period)

    def portal_link(self, *, owner: str, resources: Iterable[str] = (), expires_in: float = DEFAULT_EXPIRES_IN) -> str:
        """A signed URL that opens the portal for ``owner`` (the key its subscriptions carry, as in
        ``subscribe(owner=...)``) until ``expires_in`` seconds from now; ``resources``: the ACL
        resources whose events it may subscribe to. Hand it to that customer, or put it in an iframe."""
        return portal_link(current_app, owner, resources, expires_in)

    @staticmethod
    def generate_secret() -> str:
        """A new random ``whsec_`` verification token."""
        return generate_secret()

    def replay(self, delivery_uuid: str) -> Delivery:
        """Deliver again now, same uuid and body, with a fresh retry schedule."""
        return replay(get_state(), delivery_uuid)

    def state(self, app: Flask | None = None) -> AppState:
        """The per-app state (settings, queues, notifiers), for tools built on this package."""
        return get_state(app)


def _builtin_notifiers(app: Flask, settings: Settings) -> dict[str, Notifier]:
    return {
        "http": HttpNotifier(
            connect_timeout=settings.connect_timeout,
            timeout=settings.timeout,
            signature_header=settings.signature_header,
            policy=AddressPolicy(settings.allowed_networks),
        ),
        "eventbridge": EventBridgeNotifier(
            source=settings.eventbridge_source or app.name,
            region=settings.eventbridge_region,
            endpoint_url=settings.eventbridge_endpoint_url,
            max_batch=settings.eventbridge_batch_size,
            connect_timeout=settings.connect_timeout,
            timeout=settings.timeout,
        ),
        "sqs": SqsNotifier(
            region=settings.sqs_region,
            endpoint_url=settings.sqs_endpoint_url,
            connect_timeout=settings.connect_timeout,
            timeout=settings.timeout,
        ),
    }


def _setup_database(app: Flask, db: SQLAlchemy | None) -> SQLAlchemy:
    """Use the host's ``SQLAlchemy``; set one up (SQLite in the instance folder) if it has none."""
    existing = app.extensions.get("sqlalchemy")
    if existing is not None:
        if db is not None and existing is not db:
            raise NotSetUp("the app is set up with another SQLAlchemy object; pass that one as db=")
        return existing
    database = db or SQLAlchemy()
    if not app.config.get("SQLALCHEMY_DATABASE_URI") and not app.config.get("SQLALCHEMY_BINDS"):
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "async-events.sqlite")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": 30}})
        log.warning("No SQLALCHEMY_DATABASE_URI set: using SQLite at %s (development only)", path)
    database.init_app(app)
    return database
