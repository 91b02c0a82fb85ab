"""The REST API (flask-smorest): the Magento module's subscription calls and the delivery logs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask
from flask_smorest import Api

from flask_async_events.api import logs, subscriptions  # noqa: F401 - registers the routes
from flask_async_events.api.blueprint import blp
from flask_async_events.version import __version__

CONFIG_PREFIX = "ASYNC_EVENTS_"


class ScopedApi(Api):
    """An ``Api`` that leaves the host app's error pages alone: its JSON errors are registered on
    this package's blueprint only (flask-smorest's own would take over every error of the app)."""

    def _register_error_handlers(self) -> None:
        pass


def register_api(app: Flask, url_prefix: str, api: Api | None = None) -> Api:
    """Mount the API under ``url_prefix`` on the host's ``Api``, or on a scoped one of our own."""
    if api is None:
        for key, value in _doc_defaults(url_prefix).items():
            app.config.setdefault(CONFIG_PREFIX + key, value)
        api = ScopedApi(app, config_prefix=CONFIG_PREFIX, spec_kwargs=_spec_kwargs())
        _serve_swagger_ui_assets(app, url_prefix)
    api.register_blueprint(blp, url_prefix=url_prefix)
    return api


def _doc_defaults(url_prefix: str) -> dict[str, Any]:
    return {
        "API_TITLE": "flask-async-events",
        "API_VERSION": __version__,
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": url_prefix,
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": f"{url_prefix}/docs/assets/",
    }


def _spec_kwargs() -> dict[str, Any]:
    return {
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
    }


def _serve_swagger_ui_assets(app: Flask, url_prefix: str) -> None:
    """Serve Swagger UI's files from the swagger-ui-bundle package, so the docs work offline."""
    from swagger_ui_bundle import swagger_ui_path

    assets = Blueprint(
        "async_events_docs_assets",
        __name__,
        static_folder=str(swagger_ui_path),
        static_url_path=f"{url_prefix}/docs/assets",
    )
    app.register_blueprint(assets)
