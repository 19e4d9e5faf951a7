"""SnapStart in the local Lambda: init once, snapshot, restore (real awslambdaric path).

Every environment Lambda restores from one snapshot starts with the snapshot's
/tmp and memory, the environment id lambdacov made at init among them. The
runtime's after-restore hook gives the restored environment an id of its own,
so its object never takes the key of another environment restored from the
same snapshot, and the lines run at init are still delivered by it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import coverage
import pytest

from lambdacov.local import LocalLambda
from tests.support.oracle import ORDERS, measured, run_oracle

pytestmark = pytest.mark.e2e

WRAPPER = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper"}
ENVIRONMENT_ID = re.compile(r"orders-([0-9a-f]{32})\.coverage$")


def test_a_restored_environment_delivers_init_and_invocations_under_an_id_of_its_own(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    events = json.loads((ORDERS / "events.json").read_text())
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders", snap_start=True
    ) as function:
        for event in events:  # one of them fails on purpose, as under the oracle
            function.invoke(event)
        snapshot = function.snapshot_tmp
        assert snapshot is not None, "the runtime never asked to be restored"
        at_snapshot = (snapshot / "lambdacov" / "environment-id").read_text().strip()
        function.shutdown()

    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    keys = [item["Key"] for item in listed if item["Key"].endswith(".coverage")]
    assert len(keys) == 1, keys
    match = ENVIRONMENT_ID.search(keys[0])
    assert match is not None, keys[0]
    assert match.group(1) != at_snapshot  # another restore of this snapshot has that id

    path = tmp_path / "restored.coverage"
    s3.download_file(bucket, keys[0], str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    (tmp_path / "oracle").mkdir()
    expected, _ = run_oracle(ORDERS, ORDERS / "events.json", tmp_path / "oracle")
    assert measured(data, ORDERS, branch=False) == expected  # init lines included
