"""The event catalogue: names, wildcards, store scope, service arguments and the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_async_events.definitions import (
    EventDefinition,
    EventRegistry,
    load_definitions_file,
    normalise_event_name,
    normalise_pattern,
    pattern_matches,
    receives,
)


def test_event_names_are_lower_case_and_checked() -> None:
    assert normalise_event_name(" Sales.Order.Created ") == "sales.order.created"
    with pytest.raises(ValueError, match="invalid event name"):
        normalise_event_name("sales order")
    with pytest.raises(ValueError, match="invalid event name"):
        normalise_event_name("sales.*")
    assert normalise_pattern("Sales.*") == "sales.*"


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("sales.order.created", "sales.order.created", True),
        ("sales.order.*", "sales.order.created", True),
        ("sales.order.*", "sales.order.item.added", True),  # * crosses dots
        ("sales.order.*", "sales.orders.created", False),
        ("*.created", "customer.created", True),
        ("*.created", "customer.created.late", False),  # anchored at the end
        ("*", "anything.at.all", True),
        ("sales.*.created", "sales.order.created", True),
        ("sales.order", "sales.order.created", False),
        ("sales.order.created", "sales.order.createdx", False),
        ("a.b", "axb", False),  # dots are literal
    ],
)
def test_wildcards(pattern: str, name: str, expected: bool) -> None:
    assert pattern_matches(pattern, name) is expected


def test_store_scope() -> None:
    assert receives("e", 5, "e", 0)  # store 0 reaches everyone
    assert receives("e", 5, "e", 5)
    assert not receives("e", 0, "e", 5)  # a store-N event skips unscoped subscriptions
    assert not receives("e", 4, "e", 5)


def service(id: int, verbose: bool = False) -> dict[str, int]:
    return {"id": id}


def test_bind_drops_extra_arguments_and_requires_missing_ones() -> None:
    definition = EventDefinition("x", service)
    assert definition.bind({"id": 1, "unknown": 2}) == {"id": 1}
    with pytest.raises(TypeError, match="missing a required argument: 'id'"):
        definition.bind({})


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "events.toml"
    path.write_text(text)
    return str(path)


def test_toml_definitions_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[async_event]]\nname = "Sales.Order.Created"\nservice = "tests.test_definitions:service"\n'
        'resources = ["Magento_Sales::actions_view"]\ndescription = "placed"\n',
    )
    registry = EventRegistry()
    load_definitions_file(path, registry)
    definition = registry.get("sales.order.created")
    assert definition is not None
    assert definition.service is service
    assert definition.resources == ("Magento_Sales::actions_view",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[async_event]]\nname = "a"\nservice = "tests.test_definitions:service"\nclass = "x"\n', "unknown keys"),
        ('[[async_event]]\nname = "a"\nservice = "tests.nowhere:service"\n', "No module named"),
        ('[[async_event]]\nname = "a"\nservice = "tests.test_definitions:absent"\n', "absent"),
        ('[[async_event]]\nname = "a"\n', "'service' is required"),
        ('[[async_event]]\nname = "a b"\nservice = "tests.test_definitions:service"\n', "invalid event name"),
        ('[[async_event]]\nname = "a"\nservice = "tests.test_definitions:service"\n' * 2, "defined twice"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_toml_errors_name_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        load_definitions_file(path, EventRegistry())
    assert path in str(error.value)
