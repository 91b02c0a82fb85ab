"""Sphinx configuration: MyST Markdown pages, the Python API from the docstrings, the CLI from its click
commands, and the REST API from the OpenAPI document the blueprint serves (written at build time)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from flask_async_events.version import __version__  # noqa: E402

project = "flask-async-events"
author = "The flask-async-events contributors"
copyright = "2026, The flask-async-events contributors"
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_click",
    "sphinxcontrib.openapi",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4
exclude_patterns = ["_build", "screenshots"]
html_theme = "furo"
html_title = f"flask-async-events {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
nitpicky = False
suppress_warnings = ["myst.header"]


def _write_openapi() -> None:
    """The OpenAPI document of an app with the extension, as ``GET /rest/V1/openapi.json`` answers it."""
    from flask import Flask

    from flask_async_events import AsyncEvents

    app = Flask("docs")
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite://",
        ASYNC_EVENTS_REDIS_URL="redis://127.0.0.1:1/0",  # never connected to
        SECRET_KEY="docs",
    )
    AsyncEvents(app)
    document = app.test_client().get("/rest/V1/openapi.json").get_json()
    for path in document["paths"].values():  # the error answer every call shares is described in prose
        for operation in path.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("default", None)
    _escape_stars(document)
    build = DOCS / "_build"
    build.mkdir(exist_ok=True)
    (build / "openapi.json").write_text(json.dumps(document, indent=1))


def _escape_stars(node: Any) -> None:
    """Descriptions are plain text, not reStructuredText: a ``*`` (a wildcard) is a star, not emphasis."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = value.replace("*", "\\*")
            else:
                _escape_stars(value)
    elif isinstance(node, list):
        for item in node:
            _escape_stars(item)


def _literal_secrets(app: Any, ctx: Any, lines: list[str]) -> None:
    """The CLI's help is plain text; ``whsec_`` would read as a reStructuredText link target."""
    lines[:] = [re.sub(r"(?<![`\w])(whsec_[\w.]*)", r"``\1``", line) for line in lines]


def setup(app: Any) -> None:
    _write_openapi()
    app.connect("sphinx-click-process-description", _literal_secrets)
    app.connect("sphinx-click-process-options", _literal_secrets)
