"""Zero-code instrumentation next to other tools, and the kill switch, in the local Lambda."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lambdacov.local import LocalLambda

pytestmark = pytest.mark.e2e

CHAIN = Path(__file__).parent.parent / "fixtures" / "functions" / "chain"
WRAPPER = "/opt/lambdacov-wrapper"
SELF = "coverage_wrapper.handler.lambda_handler"


def run(layer: Path, handler: str, env: dict[str, str]) -> tuple[Any, list[str]]:
    with LocalLambda(CHAIN, handler, layer=layer, env=env, function_name="chain") as function:
        result = function.invoke({})
    assert result.error is None, result.error
    return result.payload, [line.text for line in result.logs]


def test_chains_to_the_exec_wrapper_it_replaced(host_layer: Path, bucket: str, moto_endpoint: str):
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": WRAPPER,
        "LAMBDACOV_NEXT_WRAPPER": "/var/task/vendor-wrapper",
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    payload, _ = run(host_layer, "app.handler", env)
    assert payload["vendor_wrapped"] == "1"
    assert payload["coverage_loaded_before_import"] is True
    assert payload["handler_env"] == SELF and payload["original"] == "app.handler"


def test_wraps_another_tools_handler_redirect(host_layer: Path, bucket: str, moto_endpoint: str):
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": WRAPPER,
        "VENDOR_ORIGINAL_HANDLER": "app.handler",
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    payload, _ = run(host_layer, "vendor.handler", env)
    assert payload["vendor_handler"] is True  # the vendor's redirect still runs
    assert payload["original"] == "vendor.handler"
    assert payload["coverage_loaded_before_import"] is True


def test_never_redirects_the_handler_to_itself(host_layer: Path, bucket: str, moto_endpoint: str):
    # A function whose handler already points at lambdacov (attach's handler mode).
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": WRAPPER,
        "LAMBDACOV_ORIGINAL_HANDLER": "app.handler",
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    payload, _ = run(host_layer, SELF, env)
    assert payload["original"] == "app.handler"
    assert payload["coverage_loaded_before_import"] is True


def test_kill_switch_leaves_the_function_untouched(host_layer: Path, bucket: str):
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": WRAPPER,
        "COVERAGE_ENABLED": "false",
        "COVERAGE_S3_BUCKET": bucket,
    }
    payload, _ = run(host_layer, "app.handler", env)
    assert payload["handler_env"] == "app.handler"
    assert payload["coverage_loaded_before_import"] is False


def test_a_self_pointing_original_handler_fails_clearly(host_layer: Path, bucket: str):
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": WRAPPER,
        "LAMBDACOV_ORIGINAL_HANDLER": SELF,
        "COVERAGE_S3_BUCKET": bucket,
    }
    with LocalLambda(CHAIN, SELF, layer=host_layer, env=env) as function:
        result = function.invoke({})
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert (
        "LAMBDACOV_ORIGINAL_HANDLER must name the function's own handler"
        in (result.error["errorMessage"])
    )
