"""``health_check_handler``: is coverage working in this execution environment?

Returns the document the user guide shows; ``lambdacov doctor --invoke``
validates it. It makes no AWS call, so it is cheap to wire into a handler.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from coverage_wrapper._version import __version__
from coverage_wrapper.engine import NOT_SAMPLED, get_engine
from coverage_wrapper.models import CoverageConfig


def layer_version() -> str:
    """The version of the layer this code runs from (its manifest), else the package's."""
    manifest = Path(__file__).with_name("_layer.json")
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["lambdacov_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return __version__


def health_check_handler(event: Any = None, context: Any = None) -> dict[str, Any]:
    """Report whether coverage is configured and recording.

    ``status`` is ``healthy`` when the configuration is valid and coverage.py
    can run here, ``disabled`` when the kill switch or sampling turned it off,
    and ``unhealthy`` otherwise, with the reasons in ``errors``.
    """
    errors: list[str] = []
    bucket, prefix = "", ""
    status = "healthy"
    try:
        config = CoverageConfig.from_environment()
        bucket, prefix = config.s3_bucket, config.s3_prefix
        enabled = config.enabled
    except ValueError as error:
        errors.append(str(error))
        enabled = False
    engine = get_engine()
    if not errors and PathFinder.find_spec("coverage") is None:
        # Found, not imported: importing it would cost the environment it answers for
        # about 15 MB and 100 ms for good, and the recorder (its core below) needs little
        # or nothing of it.
        errors.append("coverage.py is not importable: No module named 'coverage'")
    if errors:
        status = "unhealthy"
    elif not enabled or (engine.disabled_reason and not engine.active):
        status = "disabled" if not enabled or engine.disabled_reason == NOT_SAMPLED else "unhealthy"
        if status == "unhealthy":
            errors.append(engine.disabled_reason)
    document: dict[str, Any] = {
        "status": status,
        "coverage_enabled": status == "healthy",
        "layer_version": layer_version(),
        "s3_config": {"bucket": bucket, "prefix": prefix},
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "recording": engine.active,
        "mode": engine.mode,
    }
    if engine.recorder is not None:
        document["core"] = engine.recorder.core
    if errors:
        document["errors"] = errors
    return document
