"""The runtime in one warm process, delivering to S3 by itself (no extension).

These drive the exec wrapper's handler (``coverage_wrapper.handler``) in a
subprocess, as the Lambda runtime would import it, against moto server and
against endpoints that fail on purpose. The same runtime under the real
``awslambdaric`` with the extension is covered in tests/e2e.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import coverage
import pytest

from tests.support.faulty_s3 import FaultyS3, unused_port_endpoint
from tests.support.oracle import ORDERS, SUPPORT, measured, run_oracle

KEY = re.compile(r"^coverage/\d{4}/\d{2}/\d{2}/orders-[0-9a-f]{32}\.coverage$")


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ORDERS / "events.json"


@pytest.fixture(scope="module", params=[False, True], ids=["lines", "branch"])
def oracle(request: pytest.FixtureRequest, events: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("oracle")
    return request.param, *run_oracle(ORDERS, events, workdir, branch=request.param)


def drive(
    tmp_path: Path, events: Path, endpoint: str, bucket: str, **env: str
) -> tuple[list[Any], list[dict[str, Any]], float]:
    """Run the events through the wrapper's handler; return results, JSON log lines, seconds."""
    output = tmp_path / "results.json"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("COVERAGE_")
    }
    environment.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_LAMBDA_FUNCTION_NAME="orders",
        LAMBDA_TASK_ROOT=str(ORDERS),
        LAMBDACOV_ORIGINAL_HANDLER="app.handler",
        COVERAGE_S3_BUCKET=bucket,
        COVERAGE_SPOOL_DIR=str(tmp_path / "spool"),
        **env,
    )
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, str(SUPPORT / "drive_handler.py"), str(ORDERS), str(events), str(output)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert process.returncode == 0, process.stderr
    logs = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    return json.loads(output.read_text()), logs, elapsed


def objects(s3: Any, bucket: str) -> list[str]:
    """The data objects (source snapshots, under PREFIX/sources/, are not counted)."""
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return [item["Key"] for item in listed if item["Key"].endswith(".coverage")]


def downloaded(s3: Any, bucket: str, key: str, tmp_path: Path, branch: bool) -> dict[str, Any]:
    path = tmp_path / Path(key).name
    s3.download_file(bucket, key, str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    return measured(data, ORDERS, branch)


def test_one_object_per_environment_equals_coverage_run(
    oracle: tuple[bool, dict[str, Any], list[Any]],
    events: Path,
    tmp_path: Path,
    moto_endpoint: str,
    s3: Any,
    bucket: str,
) -> None:
    branch, expected, expected_results = oracle
    results, logs, _ = drive(
        tmp_path, events, moto_endpoint, bucket, COVERAGE_BRANCH=str(branch).lower()
    )
    assert results == expected_results  # handler results and exceptions untouched
    assert [entry for entry in logs if entry["level"] == "ERROR"] == []
    keys = objects(s3, bucket)
    assert len(keys) == 1 and KEY.match(keys[0]), keys
    head = s3.head_object(Bucket=bucket, Key=keys[0])
    assert head["ServerSideEncryption"] == "AES256"
    assert downloaded(s3, bucket, keys[0], tmp_path, branch) == expected


def test_one_object_per_invocation_with_new_lines(
    events: Path, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    expected, expected_results = (
        run_oracle(ORDERS, events, tmp_path / "o", branch=False)
        if ((tmp_path / "o").mkdir() is None)
        else ({}, [])
    )
    results, _, _ = drive(tmp_path, events, moto_endpoint, bucket, COVERAGE_FLUSH="invocation")
    assert results == expected_results
    keys = objects(s3, bucket)
    # Every invocation but the ones that ran no new line has its own object.
    assert 1 < len(keys) <= len(results)
    union: dict[str, set[int]] = {}
    for key in keys:
        assert re.match(r"^coverage/\d{4}/\d{2}/\d{2}/orders-[0-9a-f-]{36}\.coverage$", key), key
        for name, lines in downloaded(s3, bucket, key, tmp_path, False).items():
            union.setdefault(name, set()).update(lines)
    assert {name: sorted(lines) for name, lines in sorted(union.items())} == expected


def test_kill_switch_records_nothing(
    events: Path, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    results, logs, _ = drive(tmp_path, events, moto_endpoint, bucket, COVERAGE_ENABLED="false")
    assert len(results) == 7
    assert objects(s3, bucket) == []
    assert not (tmp_path / "spool" / "pending").exists()
    assert [entry for entry in logs if entry["level"] == "ERROR"] == []


def test_missing_bucket_variable_is_one_log_line_and_results_unchanged(
    events: Path, tmp_path: Path, moto_endpoint: str
) -> None:
    _, expected_results = run_oracle(ORDERS, events, tmp_path, branch=False)
    results, logs, _ = drive(tmp_path, events, moto_endpoint, "")
    assert results == expected_results
    errors = [entry for entry in logs if entry["level"] == "ERROR"]
    assert len(errors) == 1
    assert "COVERAGE_S3_BUCKET is required" in errors[0]["message"]


FAULTS = {
    "no-such-bucket": ("moto", "NoSuchBucket"),
    "access-denied": ("AccessDenied", "AccessDenied"),
    "s3-down": ("down", "EndpointConnectionError"),
    "slow-s3": ("slow", "ReadTimeoutError"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_s3_faults_change_nothing_and_data_arrives_once_s3_is_back(
    fault: str, events: Path, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    kind, code = FAULTS[fault]
    expected, expected_results = run_oracle(ORDERS, events, tmp_path, branch=False)
    spool = tmp_path / "spool"
    with FaultyS3("slow" if kind == "slow" else "deny") as bad:
        endpoint = {"moto": moto_endpoint, "down": unused_port_endpoint()}.get(kind, bad.endpoint)
        target = "missing-bucket-xyz" if kind == "moto" else bucket
        results, logs, elapsed = drive(
            tmp_path, events, endpoint, target, COVERAGE_UPLOAD_TIMEOUT="0.5"
        )
    assert results == expected_results
    errors = [entry for entry in logs if entry["level"] == "ERROR"]
    assert errors, logs
    for entry in errors:
        assert entry["message"].startswith("Failed to upload coverage file to S3"), entry
        # A slow S3 is caught by botocore's read timeout or by the upload's overall
        # time limit, whichever fires first: both name the timeout.
        assert entry["data"]["cause"] in (code, "UploadTimeout" if kind == "slow" else code)
    # An upload gives up within the timeout, and the runtime backs off after a
    # failure instead of paying the timeout again on every invocation.
    assert len(errors) == 1
    assert elapsed < 10
    assert (spool / "state" / "dirty").exists()  # nothing lost: still waiting in the spool

    # S3 is back: the next warm start of this environment delivers what was left.
    results, logs, _ = drive(tmp_path, events, moto_endpoint, bucket)
    assert [entry for entry in logs if entry["level"] == "ERROR"] == []
    keys = objects(s3, bucket)
    assert len(keys) == 1
    assert downloaded(s3, bucket, keys[0], tmp_path, False) == expected
    assert not (spool / "state" / "dirty").exists()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_full_tmp_keeps_data_in_memory_until_space_returns(
    events: Path, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    expected, expected_results = run_oracle(ORDERS, events, tmp_path, branch=False)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    output = tmp_path / "results.json"
    # A private mount namespace with a 512 KiB tmpfs filled to the last byte (when space
    # returns, it must hold the data file and SQLite's journal while it is written).
    script = (
        f"mount -t tmpfs -o size=512k tmpfs {tiny} && "
        f"(dd if=/dev/zero of={tiny}/fill bs=4k 2>/dev/null || true) && "
        f"exec {sys.executable} {SUPPORT / 'drive_handler.py'} {ORDERS} {events} {output}"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    environment.update(
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_LAMBDA_FUNCTION_NAME="orders",
        LAMBDA_TASK_ROOT=str(ORDERS),
        LAMBDACOV_ORIGINAL_HANDLER="app.handler",
        COVERAGE_S3_BUCKET=bucket,
        COVERAGE_SPOOL_DIR=str(tiny / "spool"),
        LAMBDACOV_TEST_UNLINK_AFTER=f"3:{tiny}/fill",
    )
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "-rm"]
    process = subprocess.run(
        [*unshare, "sh", "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert json.loads(output.read_text()) == expected_results
    logs = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    spool_errors = [entry for entry in logs if "could not be spooled" in entry["message"]]
    assert spool_errors and "No space left on device" in spool_errors[0]["message"]
    keys = objects(s3, bucket)
    assert len(keys) == 1
    assert downloaded(s3, bucket, keys[0], tmp_path, False) == expected


def test_an_inline_upload_never_outlasts_the_invocations_remaining_time(
    events: Path, tmp_path: Path, bucket: str
) -> None:
    # 1.5 s left in the invocation, a 10 s upload timeout, and an S3 that never answers:
    # the upload, client creation included, gives up within the remaining time less the
    # margin, so Lambda never reports a timeout the handler did not cause.
    _, expected_results = run_oracle(ORDERS, events, tmp_path, branch=False)
    with FaultyS3("slow", delay=30.0) as slow:
        results, logs, elapsed = drive(
            tmp_path,
            events,
            slow.endpoint,
            bucket,
            COVERAGE_UPLOAD_TIMEOUT="10",
            LAMBDACOV_TEST_REMAINING_MS="1500",
        )
    assert results == expected_results
    errors = [entry for entry in logs if entry["level"] == "ERROR"]
    assert [entry["data"]["cause"] for entry in errors] == ["UploadTimeout"]
    assert elapsed < 5  # one bounded attempt (~1 s), then the backoff; plus process start
