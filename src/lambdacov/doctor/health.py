"""``--invoke``: ask the function for its health check document and validate it.

The function answers ``{"action": "health_check"}`` when its handler calls
``coverage_wrapper.health_check.health_check_handler`` for that event, as the
troubleshooting guide shows. An invocation that errors (including an AWS
emulator that cannot run code) fails this check with the function's error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lambdacov.doctor.model import Check, fail, ok, warn

HEALTH_EVENT = {"action": "health_check"}
#: Seconds the health check waits for an answer beyond the function's own timeout.
INVOKE_READ_MARGIN = 10.0
_STATUSES = ("healthy", "disabled", "unhealthy")


def validate_health_document(document: Any) -> list[str]:
    """What is wrong with a health check document; an empty list when it has the guide's shape."""
    if not isinstance(document, Mapping):
        return [f"not a JSON object: {str(document)[:120]}"]
    problems: list[str] = []
    if document.get("status") not in _STATUSES:
        problems.append(f"status must be one of {', '.join(_STATUSES)}")
    if not isinstance(document.get("coverage_enabled"), bool):
        problems.append("coverage_enabled must be true or false")
    if not isinstance(document.get("layer_version"), str):
        problems.append("layer_version must be a string")
    s3_config = document.get("s3_config")
    if not isinstance(s3_config, Mapping) or not {"bucket", "prefix"} <= set(s3_config):
        problems.append("s3_config must hold bucket and prefix")
    if not isinstance(document.get("timestamp"), str):
        problems.append("timestamp must be a string")
    return problems


def check_invoke(lambda_client: Any, function: str) -> Check:
    """Invoke the function with the health check event and judge the answer."""
    answer = lambda_client.invoke(
        FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(HEALTH_EVENT)
    )
    raw = answer["Payload"].read().decode("utf-8", "replace")
    if answer.get("FunctionError"):
        return fail(
            "invoke.health",
            f"the invocation failed ({answer['FunctionError']}): {raw.strip()[:200]}",
            "fix the error above; an AWS emulator that cannot run code fails here too",
        )
    try:
        document = json.loads(raw)
    except ValueError:
        document = raw
    problems = validate_health_document(document)
    if problems:
        return fail(
            "invoke.health",
            "the answer is not a health check document: " + "; ".join(problems),
            'return health_check_handler() for {"action": "health_check"} (troubleshooting guide)',
        )
    status = document["status"]
    version = document["layer_version"]
    if status == "healthy":
        return ok(
            "invoke.health", f"healthy, layer {version}, recording={document.get('recording')}"
        )
    errors = "; ".join(document.get("errors") or []) or status
    make = warn if status == "disabled" else fail
    return make("invoke.health", f"{status}: {errors}", "see config.environment", document=document)
