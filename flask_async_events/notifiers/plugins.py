"""Notifiers from other packages, through the entry-point group ``flask_async_events.notifiers``.

An entry point's name is the notifier's name (a subscription's ``metadata``); its object is a
notifier, or a class or function that takes the Flask app and returns one (so it can read the config):

    [options.entry_points]
    flask_async_events.notifiers =
        slack = my_package.notifiers:make_slack_notifier
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from flask_async_events.errors import PluginError
from flask_async_events.notifiers.base import Notifier

if TYPE_CHECKING:  # the app is only passed through to the plug-in's factory
    from flask import Flask

GROUP = "flask_async_events.notifiers"


def load_entry_point_notifiers(app: Flask) -> dict[str, Notifier]:
    """Every installed notifier plug-in, made for ``app``; a broken one fails with its name."""
    notifiers: dict[str, Notifier] = {}
    for entry_point in entry_points(group=GROUP):
        where = f"notifier plug-in {entry_point.name!r} ({entry_point.value})"
        try:
            target = entry_point.load()
            is_instance = not isinstance(target, type) and callable(getattr(target, "notify", None))
            notifier = target if is_instance else target(app)
        except Exception as exc:
            raise PluginError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
        if not callable(getattr(notifier, "notify", None)):
            raise PluginError(f"{where} gave {notifier!r}, which has no notify(recipient, message) method")
        notifiers[entry_point.name.lower()] = notifier
    return notifiers
