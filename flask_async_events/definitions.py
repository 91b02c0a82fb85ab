"""The event catalogue: named events, the service that resolves each payload, and name matching.

This is the Python form of the Magento module's ``etc/async_events.xml``: events come from the
``@events.event`` decorator or from a TOML file of ``[[async_event]]`` tables.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from flask_async_events.errors import InvalidArguments, InvalidDefinition, InvalidEvent, InvalidValue
from flask_async_events.wildcards import wildcard_matches

EVENT_NAME = re.compile(r"^[a-z0-9._-]+$")
SUBSCRIPTION_PATTERN = re.compile(r"^[a-z0-9._*-]+$")
TOML_KEYS = {"name", "service", "resources", "description"}


OPERATIONAL_PREFIX = "async_events."  # the package's own events (delivery/operational.py)


def _normalise(name: str, allowed: re.Pattern[str], characters: str) -> str:
    if not isinstance(name, str):
        raise InvalidArguments(f"event name must be a string, got {type(name).__name__}")
    lowered = name.strip().lower()
    if not allowed.match(lowered):
        raise InvalidEvent(f"invalid event name {name!r}: use {characters}")
    return lowered


def normalise_event_name(name: str) -> str:
    """Lower-case an event name and check it, as names are stored and compared."""
    return _normalise(name, EVENT_NAME, "letters, digits, '.', '_' and '-'")


def normalise_pattern(pattern: str) -> str:
    """Lower-case a subscription's event name, which may hold ``*`` wildcards, and check it."""
    return _normalise(pattern, SUBSCRIPTION_PATTERN, "letters, digits, '.', '_', '-' and '*'")


def check_store_id(store_id: object) -> int:
    """A store id is an integer >= 0 (0 = unscoped); booleans and strings are refused."""
    if not isinstance(store_id, int) or isinstance(store_id, bool) or store_id < 0:
        raise InvalidValue(f"store_id must be an integer >= 0, got {store_id!r}")
    return store_id


def pattern_matches(pattern: str, event_name: str) -> bool:
    """Whether a subscription's (lower-case) event name matches an event: exact, or a glob where
    ``*`` matches any run of characters, dots included, anchored at both ends."""
    return wildcard_matches(pattern, event_name, fold_case=False)


def receives(pattern: str, subscription_store: int, event_name: str, event_store: int) -> bool:
    """The Magento module's routing rule: store 0 events reach every store; store N events only store N.
    Operational events reach only patterns that name them (``async_events.*``, not ``*``)."""
    if event_store != 0 and subscription_store != event_store:
        return False
    if event_name.startswith(OPERATIONAL_PREFIX) and not pattern.startswith(OPERATIONAL_PREFIX):
        return False
    return pattern_matches(pattern, event_name)


@dataclass(frozen=True)
class EventDefinition:
    """One defined event: its name, the service that resolves its payload, its ACL resources."""

    name: str
    service: Callable[..., Any]
    resources: tuple[str, ...] = ()
    description: str = ""
    origin: str = field(default="", compare=False)

    def bind(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The published arguments the service takes; a missing required one is a ``TypeError``.

        Arguments the service does not take are dropped, as the Magento module's input processor does.
        """
        signature, takes_any = self._signature
        accepted = {key: value for key, value in arguments.items() if takes_any or key in signature.parameters}
        try:
            signature.bind(**accepted)
        except TypeError as exc:
            raise InvalidArguments(f"event {self.name!r}: {exc} (service {_qualname(self.service)})") from None
        return accepted

    @cached_property
    def _signature(self) -> tuple[inspect.Signature, bool]:
        """The service's signature and whether it takes any keyword, read once (publish() runs per request)."""
        signature = inspect.signature(self.service)
        return signature, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"


class EventRegistry:
    """A name -> :class:`EventDefinition` map with case-insensitive lookups."""

    def __init__(self, definitions: Mapping[str, EventDefinition] | None = None) -> None:
        self._definitions: dict[str, EventDefinition] = dict(definitions or {})

    def add(self, definition: EventDefinition) -> None:
        """Register a definition; a second one with the same name is an error naming both."""
        existing = self._definitions.get(definition.name)
        if existing is not None:
            raise InvalidDefinition(
                f"event {definition.name!r} is defined twice: {existing.origin or 'decorator'}"
                f" and {definition.origin or 'decorator'}"
            )
        self._definitions[definition.name] = definition

    def get(self, name: str) -> EventDefinition | None:
        return self._definitions.get(name.strip().lower()) if isinstance(name, str) else None

    def copy(self) -> EventRegistry:
        return EventRegistry(self._definitions)

    def __iter__(self) -> Iterator[EventDefinition]:
        return iter(sorted(self._definitions.values(), key=lambda d: d.name))

    def __len__(self) -> int:
        return len(self._definitions)


def import_service(path: str) -> Callable[..., Any]:
    """Import ``package.module:callable`` (dots after the colon reach attributes)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise InvalidDefinition(f"service {path!r} must look like 'package.module:callable'")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise InvalidDefinition(f"service {path!r} is not callable")
    return target


def load_definitions_file(path: str, registry: EventRegistry) -> None:
    """Add every ``[[async_event]]`` table of a TOML file; errors name the file and the entry."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise InvalidDefinition(f"{path}: cannot read the event definitions file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidDefinition(f"{path}: not valid TOML: {exc}") from None
    unknown_top = set(document) - {"async_event"}
    if unknown_top:
        raise InvalidDefinition(
            f"{path}: unknown top-level keys {sorted(unknown_top)}; expected [[async_event]] tables"
        )
    entries = document.get("async_event", [])
    if not isinstance(entries, list):
        raise InvalidDefinition(f"{path}: 'async_event' must be an array of tables ([[async_event]])")
    for index, entry in enumerate(entries, start=1):
        where = f"{path}: [[async_event]] #{index}"
        if not isinstance(entry, dict):
            raise InvalidDefinition(f"{where}: must be a table")
        where = f"{where} ({entry.get('name', '?')})"
        unknown = set(entry) - TOML_KEYS
        if unknown:
            raise InvalidDefinition(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(TOML_KEYS)}")
        for required in ("name", "service"):
            if not isinstance(entry.get(required), str):
                raise InvalidDefinition(f"{where}: '{required}' is required and must be a string")
        resources = entry.get("resources", [])
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            raise InvalidDefinition(f"{where}: 'resources' must be a list of strings")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise InvalidDefinition(f"{where}: 'description' must be a string")
        try:
            name = normalise_event_name(entry["name"])
            service = import_service(entry["service"])
            registry.add(EventDefinition(name, service, tuple(resources), description, origin=where))
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise InvalidDefinition(f"{where}: {exc}") from None
