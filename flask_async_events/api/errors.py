"""JSON errors for the REST API, every one with a ``message`` that names the field at fault.

Registered on the API's blueprint only, so the host app's own error pages stay as they are.
Validation errors are 400, as in the Magento module (flask-smorest's default would be 422).
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Response, jsonify, request
from flask_smorest import abort
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES


def error_response(status: int, message: str, *, errors: Any = None, headers: dict[str, str] | None = None) -> Response:
    payload: dict[str, Any] = {"code": status, "status": HTTP_STATUS_CODES.get(status, "Error"), "message": message}
    if errors:
        payload["errors"] = errors
    response = jsonify(payload)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def fail(status: int, message: str) -> NoReturn:
    """Stop the request with a JSON error."""
    abort(status, message=message)
    raise AssertionError("unreachable")  # abort always raises


def _first_error(messages: Any, path: tuple[str, ...] = ()) -> tuple[str, str]:
    """The first (field path, message) of a nested marshmallow error dict."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            return _first_error(value, (*path, str(key)))
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], path)
    return ".".join(path), str(messages)


def handle_http_exception(error: HTTPException) -> Response:
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    if error.code == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(sorted(error.valid_methods))  # type: ignore[attr-defined]
    if "messages" in data:  # webargs: the body or query did not validate
        locations = data["messages"]
        field, message = _first_error(locations)
        field = field.split(".", 1)[1] if "." in field else field  # drop "json." / "query."
        if field in ("_schema", ""):
            text = message
        else:
            text = f"{field.replace('._schema', '')}: {message}"
        return error_response(400, text, errors=locations, headers=headers)
    code = error.code or 500
    message = data.get("message") or error.description or HTTP_STATUS_CODES.get(code, "Error")
    if code == 405 and "Allow" in headers and not data.get("message"):
        message = f"{request.method} is not allowed here; use {headers['Allow']}"
    return error_response(code, message, headers=headers)
