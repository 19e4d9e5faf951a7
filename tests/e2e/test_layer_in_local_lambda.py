"""The layer end to end: built by build-layer, run by the real awslambdaric in the local
Lambda emulator (extension, exec wrapper, freeze between invocations, SHUTDOWN), delivering
to moto server over HTTP. What the user deploys, exercised the way Lambda runs it.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import sys
from pathlib import Path
from typing import Any

import coverage
import pytest

from lambdacov.local import LocalLambda
from tests.support.faulty_s3 import FaultyS3
from tests.support.oracle import ORDERS, measured, run_oracle
from tests.support.s3_proxy import S3Proxy
from tests.support.tls import self_signed

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
    """The data objects (source snapshots, under PREFIX/sources/, are not counted)."""
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed if item["Key"].endswith(".coverage"))


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
        # Delivered by the runtime's courier after the response, the extension holding
        # the freeze until it is done:
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


def test_over_https_the_layer_loads_tls_at_init_and_delivers_with_the_systems_trust_store(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # S3 is https: an https stand-in forwards to moto, and SSL_CERT_FILE (the system's trust
    # store, as OpenSSL reads it) trusts its certificate and nothing else.
    cert_file, key_file = self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    with S3Proxy(moto_endpoint, tls=server) as proxy:
        env = {
            **WRAPPER,
            "COVERAGE_S3_BUCKET": bucket,
            "AWS_ENDPOINT_URL": proxy.endpoint,
            "SSL_CERT_FILE": str(cert_file),
        }
        with LocalLambda(FIXTURES / "probe", "app.handler", layer=host_layer, env=env) as function:
            probe = function.invoke({}).payload
            function.shutdown()
    # Loaded at init (128 MB: less than a vCPU), before the first event.
    assert probe["delivery_imported"] is True and probe["ssl_imported"] is True
    sent = proxy.sent("PUT")
    assert [key for key in sent if key.endswith(".coverage")], sent
    stored = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert [key for key in stored if key.endswith(".coverage")], stored
    assert [e for e in json_logs(function.logs) if e.get("level") == "ERROR"] == []


@pytest.mark.parametrize("branch", [False, True])
def test_runtime_stays_light_and_uses_the_layers_coverage(
    host_layer: Path, moto_endpoint: str, bucket: str, branch: bool
) -> None:
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_BRANCH": str(branch).lower(),
    }
    with LocalLambda(FIXTURES / "probe", "app.handler", layer=host_layer, env=env) as function:
        probe = function.invoke({}).payload
        probe_again = function.invoke({}).payload
        health = function.invoke({"action": "health_check"}).payload
        after_health = function.invoke({}).payload
    # No coverage.py in the function's process: line coverage on 3.12+ is recorded with
    # sys.monitoring alone, the rest with coverage.py's C tracer alone; a health check
    # finds coverage.py without importing it.
    core = "lambdacov-sysmon" if sys.version_info >= (3, 12) and not branch else "lambdacov-ctrace"
    assert probe["coverage_file"] is None and health["core"] == core, (probe, health)
    assert after_health["coverage_file"] is None
    # The layer uploads with its own S3 client: the runtime never imports boto3 for it.
    assert probe["boto3_imported"] is False and probe_again["boto3_imported"] is False
    # Its delivery code was imported at init, before the first event; moto is http: no ssl.
    assert probe["delivery_imported"] is True and probe["ssl_imported"] is False
    # It writes its data files without lambdacov's combine engine, also once it has
    # delivered (the second event comes after the first delivery).
    assert probe["combine_engine_imported"] is False
    assert probe_again["combine_engine_imported"] is False
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
            # at the response; the courier's attempts come after it.
            assert max(r.runtime_duration_ms for r in faulty[1:]) < 1000
            assert keys(s3, bucket) == []
            failures = [e for e in json_logs(function.logs) if e.get("level") == "ERROR"]
            assert failures and all(
                e["message"].startswith("Failed to upload coverage file to S3") for e in failures
            )
            # After a failure the runtime backs off instead of paying the timeout on
            # every invocation; the extension's final pass at SHUTDOWN always tries, so
            # nothing is left behind.
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


# Spool directories no process can use: name -> (the path, from a scratch directory that
# holds a regular file named "file"; the reason the log line gives). Tests run as root,
# for whom permissions change nothing: each of these fails for every user.
UNUSABLE_SPOOLS = {
    "a-regular-file": (lambda scratch: scratch / "file", "Not a directory"),
    "under-a-regular-file": (lambda scratch: scratch / "file" / "spool", "Not a directory"),
    "deep-under-a-regular-file": (
        lambda scratch: scratch / "file" / "a" / "b" / "spool",
        "Not a directory",
    ),
    "name-longer-than-NAME_MAX": (lambda scratch: scratch / ("n" * 300), "File name too long"),
    "on-procfs": (lambda scratch: Path("/proc/lambdacov-spool"), "No such file or directory"),
}


def spool_errors(function: LocalLambda) -> list[dict[str, Any]]:
    """The runtime's and the extension's ERROR lines."""
    return [e for e in json_logs(function.logs) if e.get("level") == "ERROR"]


def broken_lines(function: LocalLambda) -> list[str]:
    """Tracebacks but the function's own, and log records that could not be written."""
    return [
        line.text
        for line in function.logs
        if "Logging error" in line.text
        or ("Traceback" in line.text and "crash requested by the event" not in line.text)
    ]


def no_crash_in(function: LocalLambda) -> None:
    """Nothing in the environment's output says lambdacov broke."""
    assert broken_lines(function) == []


@pytest.mark.parametrize("where", sorted(UNUSABLE_SPOOLS))
@pytest.mark.parametrize("mode", ["wrapper", "decorator"])
def test_an_unusable_spool_directory_turns_coverage_off_with_one_line(
    where: str,
    mode: str,
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    (tmp_path / "file").write_text("not a directory")
    path_in, reason = UNUSABLE_SPOOLS[where]
    spool = path_in(tmp_path)
    env = {"COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint}
    env["COVERAGE_SPOOL_DIR"] = str(spool)
    if mode == "wrapper":
        function_dir, handler, expected = ORDERS, "app.handler", plain_results
        env.update(WRAPPER)
        sample = events
    else:
        function_dir, handler = FIXTURES / "decorated", "app.lambda_handler"
        sample = [{"name": "test"}, {}]
        expected = [{"payload": {"message": f"Hello, {name}!"}} for name in ("test", "World")]
    with LocalLambda(
        function_dir, handler, layer=host_layer, env=env, function_name="orders"
    ) as function:
        results = [outcome(function.invoke(event)) for event in sample]
        shutdown_logs = function.shutdown()
    # No Extension.InitError, no changed result: the function runs as without the layer.
    assert results == expected
    errors = spool_errors(function)
    assert len(errors) == 1, errors
    message = errors[0]["message"]
    assert "coverage is off for this execution environment" in message
    assert f"COVERAGE_SPOOL_DIR={spool} cannot be used: {reason}" in message
    assert "set COVERAGE_SPOOL_DIR to a writable directory" in message
    assert keys(s3, bucket) == []
    assert not [line for line in shutdown_logs if "Traceback" in line.text]
    no_crash_in(function)
    assert (tmp_path / "file").read_text() == "not a directory"


def test_the_kill_switch_with_an_unusable_spool_directory_is_silent(
    host_layer: Path,
    moto_endpoint: str,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    (tmp_path / "file").write_text("not a directory")
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_ENABLED": "false",
        "COVERAGE_SPOOL_DIR": str(tmp_path / "file" / "spool"),
    }
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
    ) as function:
        results = [outcome(function.invoke(event)) for event in events]
    assert results == plain_results
    assert spool_errors(function) == []
    no_crash_in(function)


def test_the_health_check_reports_an_unusable_spool_directory(
    host_layer: Path, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    # A path that happens to say "samples" is still a failure, not an unsampled environment.
    (tmp_path / "samples").write_text("not a directory")
    spool = tmp_path / "samples" / "spool"
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_SPOOL_DIR": str(spool),
    }
    with LocalLambda(FIXTURES / "probe", "app.handler", layer=host_layer, env=env) as function:
        health = function.invoke({"action": "health_check"}).payload
    assert health["status"] == "unhealthy" and health["coverage_enabled"] is False
    assert health["recording"] is False
    assert len(health["errors"]) == 1
    assert f"COVERAGE_SPOOL_DIR={spool} cannot be used: Not a directory" in health["errors"][0]


def test_a_fifo_path_the_extension_cannot_take_leaves_delivery_to_the_runtime(
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
    oracle: tuple[dict[str, Any], list[Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    # The spool works, but a directory sits where the extension makes its FIFO.
    expected, _ = oracle
    spool = tmp_path / "spool"
    (spool / "extension.fifo" / "in-the-way").mkdir(parents=True)
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_SPOOL_DIR": str(spool),
    }
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
    ) as function:
        results = [outcome(function.invoke(event)) for event in events]
        function.shutdown()
    assert results == plain_results
    no_crash_in(function)
    assert spool_errors(function) == []
    warnings = [e for e in json_logs(function.logs) if e.get("level") == "WARNING"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["message"].startswith(f"{spool / 'extension.fifo'} is in the way")
    assert "the function uploads coverage by itself" in warnings[0]["message"]
    assert "COVERAGE_SPOOL_DIR" in warnings[0]["message"]
    assert (spool / "extension.fifo" / "in-the-way").is_dir()  # not ours: left as it was
    delivered = keys(s3, bucket)
    assert len(delivered) == 1 and ENV_KEY.match(delivered[0]), delivered
    assert lines_in(s3, bucket, delivered[0], tmp_path) == expected


# A value of each COVERAGE_* variable the layer reads that no one should set, and the
# variable its one error line names (None: accepted, so no line is required).
# "\udcff" stands for a byte that is not UTF-8 (how Python reads such a variable);
# RELATIVE is a relative path (to the scratch directory, from the function's).
RELATIVE = "<relative>"
HOSTILE_VALUES: list[tuple[str, str, str | None]] = [
    ("COVERAGE_S3_BUCKET", "", "COVERAGE_S3_BUCKET"),
    ("COVERAGE_S3_BUCKET", "b" * 3000, "COVERAGE_S3_BUCKET"),
    ("COVERAGE_S3_BUCKET", "bucket-\udcff", "COVERAGE_S3_BUCKET"),
    ("COVERAGE_S3_PREFIX", "a/../b", "COVERAGE_S3_PREFIX"),
    ("COVERAGE_S3_PREFIX", "p" * 2000, "COVERAGE_S3_PREFIX"),
    ("COVERAGE_S3_PREFIX", "cov-\udcff/", "COVERAGE_S3_PREFIX"),
    ("COVERAGE_INCLUDE_PATTERNS", "[", None),
    ("COVERAGE_INCLUDE_PATTERNS", "src/**x", None),
    ("COVERAGE_INCLUDE_PATTERNS", ",,, ,", None),
    ("COVERAGE_INCLUDE_PATTERNS", "*\udcff*", None),
    ("COVERAGE_EXCLUDE_PATTERNS", "***", None),
    ("COVERAGE_EXCLUDE_PATTERNS", "x" * 3000, None),
    ("COVERAGE_DEBUG", "maybe", "COVERAGE_DEBUG"),
    ("COVERAGE_DEBUG", "\udcff", "COVERAGE_DEBUG"),
    ("COVERAGE_UPLOAD_TIMEOUT", "-1", "COVERAGE_UPLOAD_TIMEOUT"),
    ("COVERAGE_UPLOAD_TIMEOUT", "1e999", "COVERAGE_UPLOAD_TIMEOUT"),
    ("COVERAGE_UPLOAD_TIMEOUT", "nan", "COVERAGE_UPLOAD_TIMEOUT"),
    ("COVERAGE_UPLOAD_TIMEOUT", "9" * 400, "COVERAGE_UPLOAD_TIMEOUT"),
    ("COVERAGE_ENABLED", "perhaps", "COVERAGE_ENABLED"),
    ("COVERAGE_ENABLED", "\udcff", "COVERAGE_ENABLED"),
    ("COVERAGE_BRANCH", "2", "COVERAGE_BRANCH"),
    ("COVERAGE_SAMPLE_RATE", "-0.5", "COVERAGE_SAMPLE_RATE"),
    ("COVERAGE_SAMPLE_RATE", "inf", "COVERAGE_SAMPLE_RATE"),
    ("COVERAGE_SAMPLE_RATE", "0", None),
    ("COVERAGE_FLUSH", "sometimes", "COVERAGE_FLUSH"),
    ("COVERAGE_KMS_KEY_ID", "k" * 3000, None),
    ("COVERAGE_KMS_KEY_ID", "alias/\udcff", None),
    ("COVERAGE_SPOOL_DIR", "   ", None),
    ("COVERAGE_SPOOL_DIR", RELATIVE, "COVERAGE_SPOOL_DIR"),
    ("COVERAGE_CORE", "\udcff", None),
]


def test_no_value_of_a_coverage_variable_changes_what_the_function_returns(
    host_layer: Path,
    moto_endpoint: str,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    # One test for the whole table, so every value that misbehaves is listed at once.
    sample = [0, 5]  # a response and an exception
    expected = [plain_results[i] for i in sample]
    wrong: list[str] = []
    for number, (name, hostile, named) in enumerate(HOSTILE_VALUES):
        scratch = tmp_path / str(number)
        scratch.mkdir()
        value = os.path.relpath(scratch / "spool", ORDERS) if hostile == RELATIVE else hostile
        env = {
            **WRAPPER,
            "COVERAGE_S3_BUCKET": bucket,
            "AWS_ENDPOINT_URL": moto_endpoint,
            "COVERAGE_SPOOL_DIR": str(scratch / "spool"),
            "COVERAGE_UPLOAD_TIMEOUT": "2",
            name: value,
        }
        with LocalLambda(
            ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
        ) as function:
            results = [outcome(function.invoke(events[i])) for i in sample]
            function.shutdown()
        case = f"{name}={value[:40]!a}"
        if results != expected:
            wrong.append(f"{case}: results {results}")
        crashes = broken_lines(function)
        if crashes:
            wrong.append(f"{case}: {crashes}")
        errors = [e["message"] for e in spool_errors(function)]
        if named is not None and not (
            len(errors) == 1
            and errors[0].startswith("ConfigurationError: coverage is off")
            and named in errors[0]
        ):
            wrong.append(f"{case}: expected one line naming {named}, got {errors}")
    assert not wrong, "\n".join(wrong)


def test_debug_records_of_a_spool_directory_that_is_not_utf8_are_written(
    host_layer: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
    plain_results: list[dict[str, Any]],
) -> None:
    # A usable directory whose name is not UTF-8, and debug records that show it: each
    # record stays one line of UTF-8 JSON, the byte escaped, rather than a line stdout
    # refuses to write or a reader cannot decode.
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "COVERAGE_DEBUG": "true",
        "COVERAGE_SPOOL_DIR": str(tmp_path / "spool-\udcff"),
    }
    with LocalLambda(
        ORDERS, "app.handler", layer=host_layer, env=env, function_name="orders"
    ) as function:
        results = [outcome(function.invoke(event)) for event in events]
        function.shutdown()
    assert results == plain_results
    no_crash_in(function)
    assert spool_errors(function) == []
    records = json_logs(function.logs)
    started = [e for e in records if e["message"] == "Initializing coverage tracking"]
    assert started and started[0]["data"]["config"]["spool_dir"].endswith("spool-\udcff")
    assert len(keys(s3, bucket)) == 1
