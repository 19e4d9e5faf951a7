"""`lambdacov local invoke --memory`: Lambda's memory size, held by the runtime and the
layer's extension together, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.envelope import result_of
from tests.support.oracle import ORDERS

pytestmark = pytest.mark.e2e

BASIC = Path(__file__).parent.parent / "fixtures" / "functions" / "basic"
MEMORY = re.compile(r"\tMemory Size: (\d+) MB\tMax Memory Used: (\d+) MB(\t|$)")


def local_invoke(
    function_dir: Path,
    handler: str,
    event: Any,
    *args: str,
    layer: Path,
    endpoint: str,
    bucket: str,
) -> tuple[int, list[dict[str, Any]]]:
    """Run `lambdacov local invoke --json` with the layer; return its exit code and results."""
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdacov",
            "local",
            "invoke",
            "--function-dir",
            str(function_dir),
            "--handler",
            handler,
            "--layer",
            str(layer),
            "--event",
            json.dumps(event),
            "--env",
            "AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper",
            "--env",
            f"COVERAGE_S3_BUCKET={bucket}",
            "--json",
            *args,
        ],
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return process.returncode, result_of(process.stdout, "local invoke")


def platform_lines(result: dict[str, Any]) -> list[str]:
    return [line["text"] for line in result["logs"] if line["source"] == "lambda"]


def reported_memory(result: dict[str, Any]) -> tuple[int, int]:
    """Memory Size and Max Memory Used, from the invocation's REPORT line."""
    [report] = [text for text in platform_lines(result) if text.startswith("REPORT ")]
    found = MEMORY.search(report)
    assert found, report
    return int(found[1]), int(found[2])


def test_a_function_over_its_memory_size_is_killed_with_lambdas_error(
    host_layer: Path, moto_endpoint: str, bucket: str
) -> None:
    event = {"action": "allocate", "megabytes": 200}
    code, [result] = local_invoke(
        BASIC,
        "app.main",
        event,
        "--memory",
        "128",
        layer=host_layer,
        endpoint=moto_endpoint,
        bucket=bucket,
    )

    assert code == 1
    assert result["payload"] is None
    killed = f"RequestId: {result['requestId']} Error: Runtime exited with error: signal: killed"
    assert result["error"] == {"errorType": "Runtime.ExitError", "errorMessage": killed}
    # Lambda's log: the REPORT, then the two lines of a runtime that died.
    assert platform_lines(result)[-2:] == [killed, "Runtime.ExitError"]
    size, used = reported_memory(result)
    assert size == 128
    assert used > 128
    assert used == result["maxMemoryUsedMB"]


def test_the_same_function_fits_a_larger_memory_size(
    host_layer: Path, moto_endpoint: str, bucket: str
) -> None:
    event = {"action": "allocate", "megabytes": 200}
    code, [result] = local_invoke(
        BASIC,
        "app.main",
        event,
        "--memory",
        "512",
        layer=host_layer,
        endpoint=moto_endpoint,
        bucket=bucket,
    )

    assert code == 0, result["error"]
    assert result["payload"] == {"megabytes": 200}
    size, used = reported_memory(result)
    assert size == 512
    assert 200 < used <= 512


def test_the_example_with_the_layer_fits_in_128_mb_and_delivers(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    event = {
        "httpMethod": "POST",
        "path": "/orders",
        "body": json.dumps({"items": [{"sku": "pear", "quantity": 2}]}),
    }
    code, results = local_invoke(
        ORDERS,
        "app.handler",
        event,
        "--memory",
        "128",
        "--count",
        "3",
        layer=host_layer,
        endpoint=moto_endpoint,
        bucket=bucket,
    )

    assert code == 0, [result["error"] for result in results]
    assert [result["payload"]["statusCode"] for result in results] == [201, 201, 201]
    for result in results:
        size, used = reported_memory(result)
        assert size == 128
        assert 0 < used <= 128
    # The extension was alive after each response: the coverage is in S3.
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [item for item in listed if item["Key"].endswith(".coverage")]
