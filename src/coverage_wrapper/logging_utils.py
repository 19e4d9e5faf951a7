"""JSON-lines logging for the runtime and for the functions that use it.

Each record is one JSON object on one line (CloudWatch Logs keeps it whole and
its filter patterns can match its fields). DEBUG records are written only when
COVERAGE_DEBUG=true, read when the logger is first configured.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else came from ``extra=`` and is data.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Format a record as the guide shows: timestamp, level, logger, message, data."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON."""
        seconds = time.gmtime(record.created)
        millis = int(record.msecs)
        doc: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data: dict[str, Any] = {}
        for key, value in vars(record).items():
            if key == "data" and isinstance(value, dict):
                data.update(value)
            elif key not in _RECORD_FIELDS:
                data[key] = value
        if data:
            doc["data"] = data
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            doc["error"] = {"type": type(error).__name__, "message": str(error)}
        line = json.dumps(doc, default=str, ensure_ascii=False)
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            # A value read from a variable or path that is not UTF-8 holds lone
            # surrogates, which stdout cannot write: escape them as JSON escapes them.
            line = line.encode("utf-8", "backslashreplace").decode("utf-8")
        return line


def debug_enabled() -> bool:
    """True when COVERAGE_DEBUG asks for debug records."""
    return os.environ.get("COVERAGE_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def get_logger(name: str = "coverage_wrapper") -> logging.Logger:
    """Return a logger writing JSON lines to stdout (Lambda sends stdout to CloudWatch).

    The logger does not propagate to the root logger, which the Lambda runtime
    configures with its own format, so each record is written once.
    """
    logger = logging.getLogger(name)
    if not getattr(logger, "_lambdacov_configured", False):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG if debug_enabled() else logging.INFO)
        logger._lambdacov_configured = True  # type: ignore[attr-defined]
    return logger
