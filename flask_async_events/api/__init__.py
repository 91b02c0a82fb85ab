"""The REST API (flask-smorest): the Magento module's subscription calls and the delivery logs."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Blueprint, Flask, request
from flask.typing import ResponseReturnValue
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from flask_async_events.api import logs, subscriptions  # noqa: F401 - registers the routes
from flask_async_events.api.blueprint import blp
from flask_async_events.api.errors import handle_http_exception
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
    app.before_request(partial(answer_routing_errors_in_json, url_prefix))
    return api


def answer_routing_errors_in_json(url_prefix: str) -> ResponseReturnValue | None:
    """A path under the API's prefix that names no route, or a method a route does not take, is
    answered with the API's JSON error (``Allow`` listing the methods), not the host's HTML page:
    no blueprint handles an error raised before a route is chosen, and the host's own handlers for
    the rest of the site stay as they are."""
    error = request.routing_exception
    if not isinstance(error, HTTPException) or not (request.path + "/").startswith(url_prefix + "/"):
        return None
    return handle_http_exception(error)


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
