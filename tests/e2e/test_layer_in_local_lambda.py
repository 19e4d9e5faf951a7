"""The layer end to end: built by build-layer, run by the real awslambdaric in the local
Lambda emulator (extension, exec wrapper, freeze between invocations, SHUTDOWN), delivering
to moto server over HTTP. What the user deploys, exercised the way Lambda runs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import coverage
import pytest

from lambdacov.local import LocalLambda
from tests.support.faulty_s3 import FaultyS3
from tests.support.oracle import ORDERS, measured, run_oracle

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent.parent / "fixtures" / "functions"
ENV_KEY = re.compile(r"^coverage/\d{4}/\d{2}/\d{2}/orders-[0-9a-f]{32}\.coverage$")
WRAPPER = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper"}


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return json.loads((ORDERS / "events.json").read_text())


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Any]]:
    return run_oracle(ORDERS, ORDERS / "events.json", tmp_path_factory.mktemp("oracle"))


@pytest.fixture(scope="module")
def plain_results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events through the emulator without the layer."""
    with LocalLambda(ORDERS, "app.handler", function_name="orders") as function:
        return [outcome(function.invoke(event)) for event in events]


def outcome(result: Any) -> dict[str, Any]:
    """What a caller sees: the payload, or the error without lambdacov's one frame."""
    if result.error is None:
        return {"payload": result.payload}
    frames = [f for f in result.error.get("stackTrace", []) if "coverage_wrapper" not in f]
    return {
        "errorType": result.error["errorType"],
        "errorMessage": result.error["errorMessage"],
        "stackTrace": frames,
    }


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def lines_in(s3: Any, bucket: str, key: str, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / Path(key).name
    s3.download_file(bucket, key, str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    return measured(data, ORDERS, branch=False)


def json_logs(result_logs: Any) -> list[dict[str, Any]]:
    out = []
    for line in result_logs:
        text = line.text.strip()
        if text.startswith("{"):
            try:
                out.append(json.loads(text))
            except json.JSONDecodeError:
                continue
    return out


def test_zero_code_change_matches_coverage_run_and_is_delivered_before_the_freeze(
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
    oracle: tuple[dict[str, Any], list[Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    expected, _ = oracle
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
    ) as function:
        first = function.invoke(events[0])
        # Delivered by the extension after the response and before the freeze:
        # the object is there while the environment is frozen, before any shutdown.
        after_first = keys(s3, bucket)
        results = [outcome(first)] + [outcome(function.invoke(e)) for e in events[1:]]
        before_shutdown = keys(s3, bucket)
        combined_before_shutdown = lines_in(s3, bucket, before_shutdown[0], tmp_path)
        shutdown_logs = function.shutdown()
    assert results == plain_results  # results and exceptions unchanged by the layer
    assert len(after_first) == 1 and ENV_KEY.match(after_first[0]), after_first
    assert before_shutdown == after_first  # one object per environment, rewritten
    assert combined_before_shutdown == expected  # module-level lines included
    errors = [e for e in json_logs(function.logs) if e.get("level") == "ERROR"]
    assert errors == []
    assert not [line for line in shutdown_logs if "Traceback" in line.text]


def test_runtime_stays_light_and_uses_the_layers_coverage(
    host_layer: Path, moto_endpoint: str, bucket: str
) -> None:
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    with LocalLambda(FIXTURES / "probe", "app.handler", layer=host_layer, env=env) as function:
        probe = function.invoke({}).payload
        probe_again = function.invoke({}).payload
        health = function.invoke({"action": "health_check"}).payload
    assert probe["coverage_file"].startswith(str(function.opt_dir)), probe
    # The extension uploads: the runtime process never imports boto3 for lambdacov.
    assert probe["boto3_imported"] is False and probe_again["boto3_imported"] is False
    assert health["status"] == "healthy" and health["coverage_enabled"] is True
    assert health["s3_config"] == {"bucket": bucket, "prefix": "coverage/"}
    assert health["mode"] == "wrapper" and health["recording"] is True
    assert re.match(r"^\d+\.\d+\.\d+", health["layer_version"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", health["timestamp"])


def test_decorator_mode_is_delivered_at_shutdown(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    env = {"COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    with LocalLambda(
        FIXTURES / "decorated",
        "app.lambda_handler",
        layer=host_layer,
        env=env,
        function_name="decorated",
    ) as function:
        assert function.invoke({"name": "test"}).payload == {"message": "Hello, test!"}
        assert function.invoke({}).payload == {"message": "Hello, World!"}
        function.shutdown()
    found = keys(s3, bucket)
    assert len(found) == 1 and "/decorated-" in found[0]
    path = tmp_path / "d.coverage"
    s3.download_file(bucket, found[0], str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    app = next(name for name in data.measured_files() if name.endswith("decorated/app.py"))
    # greeting()'s both branches ran, and the handler's body.
    assert {7, 8, 9, 14, 15} <= set(data.lines(app) or [])


@pytest.mark.parametrize("mode", ["deny", "slow", "reset"])
def test_s3_faults_leave_results_unchanged_and_data_arrives_when_s3_is_back(
    mode: str,
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
    oracle: tuple[dict[str, Any], list[Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    expected, _ = oracle
    with FaultyS3(mode, delay=3.0, upstream=moto_endpoint) as proxy:
        env = {
            **WRAPPER,
            "COVERAGE_S3_BUCKET": bucket,
            "AWS_ENDPOINT_URL": proxy.endpoint,
            "COVERAGE_UPLOAD_TIMEOUT": "1",
        }
        with LocalLambda(
            ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
        ) as function:
            faulty = [function.invoke(event) for event in events]
            assert [outcome(r) for r in faulty] == plain_results
            # The response is not held back by a failing S3: the runtime's part ends
            # at the response; the extension's attempts come after it.
            assert max(r.runtime_duration_ms for r in faulty[1:]) < 1000
            assert keys(s3, bucket) == []
            failures = [e for e in json_logs(function.logs) if e.get("level") == "ERROR"]
            assert failures and all(
                e["message"].startswith("Failed to upload coverage file to S3") for e in failures
            )
            # After a failure the extension backs off instead of paying the timeout
            # on every invocation; SHUTDOWN always tries, so nothing is left behind.
            proxy.mode = "forward"  # S3 is back
            function.shutdown()
            delivered = keys(s3, bucket)
            assert len(delivered) == 1
            assert lines_in(s3, bucket, delivered[0], tmp_path) == expected


def test_missing_configuration_changes_nothing(
    host_layer: Path,
    moto_endpoint: str,
    events: list[dict[str, Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    env = {**WRAPPER, "AWS_ENDPOINT_URL": moto_endpoint}  # no COVERAGE_S3_BUCKET
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
    ) as function:
        results = [outcome(function.invoke(event)) for event in events]
    assert results == plain_results
    errors = [e for e in json_logs(function.logs) if e.get("level") == "ERROR"]
    assert len(errors) == 1 and "COVERAGE_S3_BUCKET is required" in errors[0]["message"]


def test_a_coverage_error_is_one_log_line_and_changes_nothing(
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    events: list[dict[str, Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    # coverage.py refuses to start (an unknown core): the function runs unmeasured.
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_CORE": "no-such-core",
    }
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
    ) as function:
        results = [outcome(function.invoke(event)) for event in events]
    assert results == plain_results
    errors = [e for e in json_logs(function.logs) if e.get("level") == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["message"].startswith("CoverageInitializationError")
    assert "Unknown core value" in errors[0]["message"]
    assert keys(s3, bucket) == []


def test_data_left_behind_by_a_timed_out_environment_is_delivered_by_the_next(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    with FaultyS3("deny", upstream=moto_endpoint) as proxy:
        env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": proxy.endpoint}
        with LocalLambda(
            FIXTURES / "sleepy",
            "app.handler",
            layer=host_layer,
            env=env,
            timeout=2,
            function_name="sleepy",
        ) as function:
            assert function.invoke({"path": 1}).payload == "first"  # spooled; upload denied
            timed_out = function.invoke({"sleep": 5})
            assert timed_out.error is not None and "timed out" in timed_out.error["errorMessage"]
            proxy.mode = "forward"  # S3 is back; the environment was reset, /tmp kept
            assert function.invoke({"path": 2}).payload == "second"
            delivered = keys(s3, bucket)
    assert len(delivered) == 1 and "/sleepy-" in delivered[0]
    path = tmp_path / "sleepy.coverage"
    s3.download_file(bucket, delivered[0], str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    app = next(name for name in data.measured_files() if name.endswith("sleepy/app.py"))
    executed = set(data.lines(app) or [])
    assert {7, 11} <= executed  # first_path (before the timeout) and second_path (after)
