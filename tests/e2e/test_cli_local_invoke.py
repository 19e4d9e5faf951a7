"""`lambdacov local invoke` with the layer: what the README's first command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.envelope import result_of
from tests.support.oracle import ORDERS

pytestmark = pytest.mark.e2e


def test_local_invoke_with_the_layer_lands_coverage_in_s3(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    event = {
        "httpMethod": "POST",
        "path": "/orders",
        "body": json.dumps({"items": [{"sku": "pear", "quantity": 2}]}),
    }
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdacov",
            "local",
            "invoke",
            "--function-dir",
            str(ORDERS),
            "--handler",
            "app.handler",
            "--layer",
            str(host_layer),
            "--event",
            json.dumps(event),
            "--count",
            "2",
            "--function-name",
            "orders",
            "--json",
            "--env",
            f"COVERAGE_S3_BUCKET={bucket}",
            "--env",
            "AWS_LAMBDA_EXEC_WRAPPER=/opt/lambdacov-wrapper",
        ],
        env={**os.environ, "AWS_ENDPOINT_URL": moto_endpoint},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    results = result_of(process.stdout, "local invoke")
    assert [r["payload"]["statusCode"] for r in results] == [201, 201]
    listed = [
        item
        for item in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if item["Key"].endswith(".coverage")  # not the source snapshots
    ]
    assert len(listed) == 1 and listed[0]["Key"].startswith("coverage/")
    assert "/orders-" in listed[0]["Key"]
