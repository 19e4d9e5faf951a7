"""A container image function, attached by `lambdacov attach`, run in the local Lambda.

The image is a root directory as Docker would unpack it: the function's code
in /var/task and the layer's files in /opt (what `build-layer --format dir`
writes and the documented Dockerfile lines copy). The function is created in
moto as an image function with the command AWS base images take, attached
with the CLI, and its command and variables, read back from moto, are what the
local Lambda runs: no layer, no exec wrapper, as in Lambda.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import coverage
import pytest

from lambdacov.errors import UsageError
from lambdacov.local import image_lambda
from lambdacov.local.layers import extract_zip
from tests.support.lambda_fleet import clients, make_role, run_cli
from tests.support.moto_images import apply_image_config_updates
from tests.support.oracle import ORDERS, measured, run_oracle

pytestmark = pytest.mark.e2e

REGION = "eu-north-1"


def test_an_attached_image_function_records_what_coverage_run_records(
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apply_image_config_updates(monkeypatch)
    lam, iam = clients(moto_endpoint, REGION)
    name = f"orders-image-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        Role=make_role(iam),
        PackageType="Image",
        Code={"ImageUri": "123456789012.dkr.ecr.eu-north-1.amazonaws.com/orders:latest"},
        ImageConfig={"Command": ["app.handler"]},
    )
    code, _, err = run_cli(
        capsys,
        "attach",
        name,
        "--bucket",
        bucket,
        "--endpoint-url",
        moto_endpoint,
        "--region",
        REGION,
    )
    assert code == 0, err
    deployed = lam.get_function_configuration(FunctionName=name)
    command = deployed["ImageConfigResponse"]["ImageConfig"]["Command"]
    variables = deployed["Environment"]["Variables"]
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in variables and not deployed.get("Layers")

    root = tmp_path / "image"
    shutil.copytree(ORDERS, root / "var" / "task")
    extract_zip(host_layer, root / "opt")  # the files `build-layer --format dir` writes
    events = ORDERS / "events.json"
    with image_lambda(
        root,
        command,
        env={**variables, "AWS_ENDPOINT_URL": moto_endpoint},
        function_name=name,
    ) as function:
        for event in json.loads(events.read_text()):
            function.invoke(event)  # one of them fails on purpose, as under the oracle
        function.shutdown()

    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    keys = [item["Key"] for item in listed if item["Key"].endswith(".coverage")]
    assert len(keys) == 1 and f"/{name}-" in keys[0], keys
    path = tmp_path / "image.coverage"
    s3.download_file(bucket, keys[0], str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    (tmp_path / "oracle").mkdir()
    expected, _ = run_oracle(ORDERS, events, tmp_path / "oracle")
    assert measured(data, root / "var" / "task", branch=False) == expected


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["/lambda-entrypoint.sh", "app.handler"], "command is one handler"),
        (["app.handler"], "has no /var/task"),
    ],
)
def test_what_the_image_mode_cannot_run_is_refused_before_anything_starts(
    tmp_path: Path, command: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        image_lambda(tmp_path, command)
