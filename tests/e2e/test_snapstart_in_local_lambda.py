"""SnapStart in the local Lambda: init once, snapshot, restore (real awslambdaric path).

Every environment Lambda restores from one snapshot starts with the snapshot's
/tmp and memory. lambdacov makes nothing there that names an object: under
SnapStart the environment id is made after the restore, by the first process
that needs it, so environments restored from one snapshot never share a key.
The lines run at init are still delivered by the restored environment.
"""

from __future__ import annotations

import itertools
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
ENVIRONMENT_ID = re.compile(r"-([0-9a-f]{32})\.coverage$")
CONTEXT_FUNCTION = """\
from coverage_wrapper import CoverageContext

LIMIT = 2


def is_big(n):
    return n > LIMIT


def handler(event, context):
    with CoverageContext(context.aws_request_id):
        return {"big": is_big(event["n"])}
"""


def data_keys(s3: Any, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return [item["Key"] for item in listed if item["Key"].endswith(".coverage")]


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
        made_at_init = sorted(path.name for path in (snapshot / "lambdacov").iterdir())
        api = function.environment.api  # type: ignore[union-attr]
        function.shutdown()

    assert "environment-id" not in made_at_init  # what every restore would share
    # No keys in a SnapStart environment's variables: the uploads asked Lambda's
    # credentials endpoint for them, after the restore (keys from init would be stale).
    assert api.credential_requests
    assert function.restored_at is not None
    assert min(api.credential_requests) > function.restored_at
    keys = data_keys(s3, bucket)
    assert len(keys) == 1 and ENVIRONMENT_ID.search(keys[0]), keys
    path = tmp_path / "restored.coverage"
    s3.download_file(bucket, keys[0], str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    (tmp_path / "oracle").mkdir()
    expected, _ = run_oracle(ORDERS, ORDERS / "events.json", tmp_path / "oracle")
    assert measured(data, ORDERS, branch=False) == expected  # init lines included


def lines_in(s3: Any, bucket: str, key: str, version: str, tmp_path: Path) -> dict[str, list[Any]]:
    path = tmp_path / f"{version}.coverage"
    s3.download_file(bucket, key, str(path), ExtraArgs={"VersionId": version})
    data = coverage.CoverageData(basename=str(path))
    data.read()
    return measured(data, ORDERS, branch=False)


def oracle_of(events: list[Any], workdir: Path) -> dict[str, list[Any]]:
    workdir.mkdir()
    (workdir / "events.json").write_text(json.dumps(events))
    expected, _ = run_oracle(ORDERS, workdir / "events.json", workdir)
    return expected


def test_three_environments_restored_from_one_snapshot_deliver_init_lines_each_under_its_own_key(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    events = json.loads((ORDERS / "events.json").read_text())
    shares = [events[k::3] for k in range(3)]  # one environment's invocations each
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_DEBUG": "true",
    }
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders", snap_start=True
    ) as function:
        for n, share in enumerate(shares, start=1):
            for event in share:
                function.invoke(event)
            # Delivered within the invocations: the restored environment's extension
            # held the freeze for the runtime, as after a cold start.
            assert len(data_keys(s3, bucket)) == n
            function.shutdown()
        restores = function.restores
        lines = [line.text for line in function.logs]

    assert restores == 3
    # INIT ran once: every environment holds its recorder as the snapshot had it.
    assert sum("Initializing coverage tracking" in text for text in lines) == 1
    assert not [text for text in lines if '"level": "ERROR"' in text]
    keys = data_keys(s3, bucket)
    identities = {match[1] for key in keys if (match := ENVIRONMENT_ID.search(key))}
    assert len(keys) == 3 and len(identities) == 3, keys
    delivered = []
    for key in keys:
        # Listed newest first (LastModified has whole seconds only).
        versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"][::-1]
        assert versions[-1]["IsLatest"]
        history = [lines_in(s3, bucket, key, v["VersionId"], tmp_path) for v in versions]
        for older, newer in itertools.pairwise(history):  # no other environment wrote here
            assert all(set(older[name]) <= set(newer.get(name, [])) for name in older)
        delivered.append(history[-1])

    union: dict[str, set[Any]] = {}
    for data in delivered:
        for name, numbers in data.items():
            union.setdefault(name, set()).update(numbers)
    expected = oracle_of(events, tmp_path / "oracle")
    assert {name: sorted(numbers) for name, numbers in union.items()} == expected
    # The lines init ran are in each environment's object, as after a cold start.
    at_init = oracle_of([], tmp_path / "init")
    assert at_init and all(
        set(numbers) <= set(data.get(name, []))
        for data in delivered
        for name, numbers in at_init.items()
    )
    # And each object is exactly its environment's init and invocations (keys are
    # listed by name, not in the order the environments ran).
    own = [oracle_of(share, tmp_path / f"share-{n}") for n, share in enumerate(shares)]
    assert sorted(delivered, key=repr) == sorted(own, key=repr)


def test_a_function_measured_with_the_context_manager_makes_no_id_before_the_snapshot(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    code = tmp_path / "function"
    code.mkdir()
    (code / "app.py").write_text(CONTEXT_FUNCTION)
    env = {"COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    with LocalLambda(
        code, "app.handler", layer=host_layer, env=env, function_name="ctx", snap_start=True
    ) as function:
        result = function.invoke({"n": 3})
        snapshot = function.snapshot_tmp
        assert snapshot is not None
        made_at_init = sorted(path.name for path in (snapshot / "lambdacov").iterdir())
        function.shutdown()

    assert result.payload == {"big": True}
    assert "environment-id" not in made_at_init
    keys = data_keys(s3, bucket)
    assert len(keys) == 1 and ENVIRONMENT_ID.search(keys[0]), keys


@pytest.mark.parametrize(("rate", "sampled"), [("0.000000001", False), ("0.999999999", True)])
def test_the_sample_is_drawn_in_each_restored_environment_not_at_init(
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    rate: str,
    sampled: bool,
) -> None:
    events = json.loads((ORDERS / "events.json").read_text())[:3]
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_SAMPLE_RATE": rate,
        "COVERAGE_DEBUG": "true",
    }
    with LocalLambda(
        ORDERS,
        "app.handler",
        layer=host_layer,
        env=env,
        function_name="sampled",
        snap_start=True,
        timeout=5,
    ) as function:
        results = [function.invoke(event) for event in events]
        function.shutdown()
        lines = [line.text for line in function.logs]

    assert all(result.ok for result in results)
    # Recording starts at init whatever the rate (a draw there would be in the snapshot,
    # the same for every environment restored from it); the draw comes with the first
    # invocation's checkpoint, after the restore.
    started = [n for n, text in enumerate(lines) if "Initializing coverage tracking" in text]
    left_out = [n for n, text in enumerate(lines) if "drawn after the restore" in text]
    assert len(started) == 1
    # The extension is told, and does not wait for the end of later invocations.
    assert not any("did not report the end of the invocation" in text for text in lines)
    keys = data_keys(s3, bucket)
    if not sampled:
        first_response = next(n for n, text in enumerate(lines) if text.startswith("END "))
        assert len(left_out) == 1 and started[0] < left_out[0] < first_response
        assert keys == []
        return
    assert left_out == [] and len(keys) == 1
    path = tmp_path / "sampled.coverage"
    s3.download_file(bucket, keys[0], str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(events))
    (tmp_path / "oracle").mkdir()
    expected, _ = run_oracle(ORDERS, events_file, tmp_path / "oracle")
    assert measured(data, ORDERS, branch=False) == expected


PRIMED_FUNCTION = """\
from coverage_wrapper import coverage_handler

LIMIT = 2


@coverage_handler
def handler(event, context):
    return {"big": event["n"] > LIMIT}


handler({"n": 0}, None)  # primed at init, as SnapStart guides suggest
"""


def test_a_handler_primed_at_init_does_not_draw_the_sample_before_the_snapshot(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    code = tmp_path / "function"
    code.mkdir()
    (code / "app.py").write_text(PRIMED_FUNCTION)
    env = {
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_SAMPLE_RATE": "0.000000001",
        "COVERAGE_DEBUG": "true",
    }
    with LocalLambda(
        code, "app.handler", layer=host_layer, env=env, function_name="primed", snap_start=True
    ) as function:
        results = [function.invoke({"n": n}) for n in (1, 5)]
        function.shutdown()
        lines = [line.text for line in function.logs]

    assert [result.payload for result in results] == [{"big": False}, {"big": True}]
    restore = next(n for n, text in enumerate(lines) if text.startswith("RESTORE_START"))
    left_out = [n for n, text in enumerate(lines) if "drawn after the restore" in text]
    assert len(left_out) == 1 and left_out[0] > restore  # not at the priming call
    assert data_keys(s3, bucket) == []
