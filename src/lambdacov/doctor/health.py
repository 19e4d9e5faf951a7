"""``--invoke``: ask the function for its health check document and validate it.

The function answers ``{"action": "health_check"}`` when its handler calls
``coverage_wrapper.health_check.health_check_handler`` for that event, as the
troubleshooting guide shows. An invocation that errors (including an AWS
emulator that cannot run code) fails this check with the function's error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdacov.doctor.model import Check, fail, ok, skipped, warn

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


@dataclass(frozen=True)
class HealthAnswer:
    """What the function answered to the health check event."""

    raw: str
    function_error: str | None  # Lambda's FunctionError ("Unhandled"), None when it returned
    document: Any  # the answer parsed as JSON, else the raw text

    @property
    def error_type(self) -> str:
        """The errorType of a failed invocation's payload ("" when none)."""
        if self.function_error and isinstance(self.document, Mapping):
            return str(self.document.get("errorType") or "")
        return ""

    @property
    def error_message(self) -> str:
        """The errorMessage of a failed invocation's payload, else its first 200 characters."""
        if isinstance(self.document, Mapping) and self.document.get("errorMessage"):
            return str(self.document["errorMessage"])
        return self.raw.strip()[:200]


def invoke_health(lambda_client: Any, function: str) -> HealthAnswer:
    """Invoke the function once with the health check event."""
    answer = lambda_client.invoke(
        FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(HEALTH_EVENT)
    )
    raw = answer["Payload"].read().decode("utf-8", "replace")
    try:
        document = json.loads(raw)
    except ValueError:
        document = raw
    return HealthAnswer(raw, answer.get("FunctionError"), document)


def check_invoke(lambda_client: Any, function: str) -> Check:
    """Invoke the function with the health check event and judge the answer."""
    return judge_health(invoke_health(lambda_client, function))


def judge_health(answer: HealthAnswer) -> Check:
    """The invoke.health check of one answer."""
    if answer.function_error:
        return fail(
            "invoke.health",
            f"the invocation failed ({answer.function_error}): {answer.raw.strip()[:200]}",
            "fix the error above; an AWS emulator that cannot run code fails here too",
        )
    document = answer.document
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


def judge_image(answer: HealthAnswer, *, wired: bool, fix: str) -> Check:
    """function.image from a container image function's answer: does it carry the runtime?

    A function wired through the redirect handler imports coverage_wrapper
    before its own code, at init: an ImportModuleError naming it means the
    image lacks lambdacov's files, and any other answer means they imported.
    A health check document says so whether or not the function is wired.
    """
    document = answer.document
    if not answer.function_error and not validate_health_document(document):
        broken = [e for e in document.get("errors") or [] if "coverage.py is not importable" in e]
        if broken:
            return fail(
                "function.image",
                f"the image carries coverage_wrapper, but not a coverage.py for its Python: "
                f"{broken[0]}",
                fix,
            )
        return ok(
            "function.image", f"the image carries lambdacov's runtime {document['layer_version']}"
        )
    missing = (
        answer.error_type == "Runtime.ImportModuleError"
        and "coverage_wrapper" in answer.error_message
    )
    if missing:
        return fail(
            "function.image",
            f"the image does not carry lambdacov's runtime: {answer.error_message[:200]}",
            fix,
        )
    if wired:
        return ok(
            "function.image",
            "the image carries lambdacov's runtime: its redirect handler imported "
            "(the answer itself: invoke.health)",
        )
    return skipped(
        "function.image",
        "the function is not wired (function.wiring), so its invocation does not show whether "
        "the image carries lambdacov's runtime",
        fix,
    )
