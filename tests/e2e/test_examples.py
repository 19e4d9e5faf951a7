"""The examples under examples/ run as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import coverage
import pytest

from lambdacov.local import LocalLambda

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_combiner_function_merges_the_prefix_in_the_local_lambda(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    for n, lines in enumerate(([1, 2], [2, 7])):
        data = coverage.CoverageData(basename=str(tmp_path / f"{n}.coverage"))
        data.add_lines({"/var/task/app.py": lines})
        data.close()
        s3.upload_file(
            str(tmp_path / f"{n}.coverage"), bucket, f"coverage/2026/01/0{n + 1}/f-{n}.coverage"
        )
    env = {"COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    with LocalLambda(EXAMPLES / "combiner", "app.handler", layer=host_layer, env=env) as function:
        result = function.invoke({"prefix": "coverage/2026/"})
    assert result.error is None, result.error
    assert result.payload == {
        "output_key": "combined/report.json",
        "inputs": 2,
        "skipped": 0,
        "files": 1,
    }
    report = json.loads(s3.get_object(Bucket=bucket, Key="combined/report.json")["Body"].read())
    assert report["files"] == {"/var/task/app.py": [1, 2, 7]}
