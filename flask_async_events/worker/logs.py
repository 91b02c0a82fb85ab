"""The worker's log, for an operator: this package's lines (one per attempt, one per endpoint state
change, maintenance) at the chosen level, and RQ's own per-job and registry-cleaning chatter only
with ``--verbose`` (RQ's warnings and errors always). ``json`` writes one object per line for log
shippers, with an attempt's facts as keys."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from flask_async_events.errors import InvalidValue

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%H:%M:%S"
RQ_LOGGERS = ("rq",)
MAX_MESSAGE = 2000  # a Sentinel error repeats every address it tried; a line stays readable


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the attempt's fields, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _brief(record.getMessage()),
        }
        entry.update(getattr(record, "delivery", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """The text format, with very long messages cut."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _brief(record.message)
        return super().formatMessage(record)


def _brief(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " …"


def configure_worker_logging(level: str, *, log_format: str = "text", verbose: bool = False) -> str:
    """Send every record to stderr in ``log_format``; return the level to hand RQ for its own loggers."""
    if log_format not in FORMATS:
        raise InvalidValue(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "async_events", False)]:
        root.removeHandler(old)
    handler.async_events = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("flask_async_events").setLevel(level.upper())
    rq_level = level.upper() if verbose else "WARNING"
    for name in RQ_LOGGERS:
        logging.getLogger(name).setLevel(rq_level)
    return rq_level
