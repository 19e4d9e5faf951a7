"""The runtime's public helpers against moto server: upload, combine, CoverageContext."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import coverage
import pytest

from coverage_wrapper.combiner import combine_coverage_files
from coverage_wrapper.errors import S3UploadError
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.s3_uploader import upload_coverage_file


def data_file(path: Path, lines: dict[str, list[int]]) -> Path:
    data = coverage.CoverageData(basename=str(path))
    data.add_lines(lines)
    data.close()
    return path


def config(bucket: str, **extra: Any) -> CoverageConfig:
    return CoverageConfig.from_environment({"COVERAGE_S3_BUCKET": bucket, **extra})


def test_upload_takes_a_path_bytes_or_coverage_data(tmp_path: Path, s3: Any, bucket: str) -> None:
    path = data_file(tmp_path / "a.coverage", {"/var/task/app.py": [1, 2]})
    when = datetime(2024, 1, 15, 10, 30)
    keys = [
        upload_coverage_file(
            path, "my-function", "abc-123", config=config(bucket), timestamp=when, client=s3
        ),
        upload_coverage_file(
            path.read_bytes(),
            "my-function",
            "abc-124",
            config=config(bucket),
            timestamp=when,
            client=s3,
        ),
    ]
    live = coverage.CoverageData(basename=str(tmp_path / "b.coverage"))
    live.add_lines({"/var/task/b.py": [3]})
    keys.append(
        upload_coverage_file(
            live, "my-function", "abc-125", config=config(bucket), timestamp=when, client=s3
        )
    )
    assert keys == [f"coverage/2024/01/15/my-function-abc-12{n}.coverage" for n in (3, 4, 5)]
    head = s3.head_object(Bucket=bucket, Key=keys[2])
    assert head["ServerSideEncryption"] == "AES256"
    s3.download_file(bucket, keys[2], str(tmp_path / "back.coverage"))
    back = coverage.CoverageData(basename=str(tmp_path / "back.coverage"))
    back.read()
    assert back.lines("/var/task/b.py") == [3]


def test_upload_with_a_kms_key(tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str) -> None:
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    path = data_file(tmp_path / "a.coverage", {"/var/task/app.py": [1]})
    key = upload_coverage_file(
        path, "f", "1", config=config(bucket, COVERAGE_KMS_KEY_ID=key_id), client=s3
    )
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(key_id)


def test_upload_to_a_missing_bucket_is_an_s3_upload_error(tmp_path: Path, s3: Any) -> None:
    path = data_file(tmp_path / "a.coverage", {"/var/task/app.py": [1]})
    with pytest.raises(S3UploadError) as caught:
        upload_coverage_file(path, "f", "1", config=config("no-such-bucket-here"), client=s3)
    assert caught.value.code == "NoSuchBucket"
    assert str(caught.value).startswith("Failed to upload coverage file to S3: NoSuchBucket")
    assert "create the bucket" in caught.value.hint


def test_combiner_merges_skips_bad_objects_and_writes_both_outputs(
    tmp_path: Path, s3: Any, bucket: str
) -> None:
    for n, lines in enumerate(([1, 2], [2, 5], [9])):
        path = data_file(tmp_path / f"{n}.coverage", {"/var/task/app.py": lines})
        s3.upload_file(str(path), bucket, f"coverage/2024/01/15/fn-{n}.coverage")
    s3.put_object(Bucket=bucket, Key="coverage/2024/01/15/fn-bad.coverage", Body=b"not sqlite")
    s3.put_object(Bucket=bucket, Key="coverage/notes.txt", Body=b"ignored: not a data file")

    summary = combine_coverage_files(
        bucket, "coverage/", "coverage/combined/report.json", s3_client=s3
    )
    assert summary["inputs"] == 3
    assert [entry["key"] for entry in summary["skipped"]] == ["coverage/2024/01/15/fn-bad.coverage"]
    assert summary["files"] == {"/var/task/app.py": [1, 2, 5, 9]}
    stored = json.loads(
        s3.get_object(Bucket=bucket, Key="coverage/combined/report.json")["Body"].read()
    )
    assert stored["files"] == summary["files"]

    combine_coverage_files(bucket, "coverage/", "coverage/combined/all.coverage", s3_client=s3)
    s3.download_file(bucket, "coverage/combined/all.coverage", str(tmp_path / "all.coverage"))
    combined = coverage.CoverageData(basename=str(tmp_path / "all.coverage"))
    combined.read()
    assert combined.lines("/var/task/app.py") == [1, 2, 5, 9]


def _run_in_lambda_like_process(tmp_path: Path, code: str, env: dict[str, str]) -> list[Any]:
    task = tmp_path / "task"
    task.mkdir()
    (task / "work.py").write_text(
        textwrap.dedent("""
        def business_logic(x):
            if x > 0:
                return "positive"
            return "other"

        def setup_resources():
            return 1
    """)
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    environment.update(
        LAMBDA_TASK_ROOT=str(task),
        COVERAGE_SPOOL_DIR=str(tmp_path / "spool"),
        AWS_LAMBDA_FUNCTION_NAME="ctx",
        **env,
    )
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=task,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return [json.loads(line) for line in process.stdout.splitlines() if line.startswith("[")]


def test_coverage_context_measures_only_its_block(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    _run_in_lambda_like_process(
        tmp_path,
        """
        import sys
        sys.path.insert(0, ".")
        from coverage_wrapper import CoverageContext
        import work
        work.setup_resources()            # outside: not measured
        with CoverageContext():
            work.business_logic(1)
        work.business_logic(-1)           # outside again: not measured
    """,
        {"COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint},
    )
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if o["Key"].endswith(".coverage")  # not the source snapshots
    ]
    assert len(keys) == 1
    s3.download_file(bucket, keys[0], str(tmp_path / "c.coverage"))
    data = coverage.CoverageData(basename=str(tmp_path / "c.coverage"))
    data.read()
    work = next(name for name in data.measured_files() if name.endswith("work.py"))
    assert data.lines(work) == [3, 4]  # `if x > 0` and `return "positive"` only


def test_sampled_out_environment_records_nothing_and_says_so(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    outputs = _run_in_lambda_like_process(
        tmp_path,
        """
        import json, sys
        sys.path.insert(0, ".")
        from coverage_wrapper import coverage_handler
        from coverage_wrapper.health_check import health_check_handler
        import work

        @coverage_handler
        def handler(event, context):
            return work.business_logic(event["x"])

        result = handler({"x": 1}, None)
        loaded = "coverage" in sys.modules  # a sampled-out environment never imports it
        print(json.dumps([result, health_check_handler()["status"], loaded]))
    """,
        {
            "COVERAGE_S3_BUCKET": bucket,
            "AWS_ENDPOINT_URL": moto_endpoint,
            "COVERAGE_SAMPLE_RATE": "0",
        },
    )
    assert outputs == [["positive", "disabled", False]]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_coverage_context_keeps_tracing_while_another_threads_block_is_open(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    _run_in_lambda_like_process(
        tmp_path,
        """
        import sys, threading
        sys.path.insert(0, ".")
        from coverage_wrapper import CoverageContext
        import work

        inside, go = threading.Event(), threading.Event()

        def worker():
            with CoverageContext():
                inside.set()
                go.wait(10)
                work.business_logic(1)   # runs after the main thread's block has closed

        with CoverageContext():
            thread = threading.Thread(target=worker)
            thread.start()
            inside.wait(10)
        go.set()
        thread.join(10)
    """,
        {"COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": moto_endpoint},
    )
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if o["Key"].endswith(".coverage")  # not the source snapshots
    ]
    assert len(keys) == 1
    s3.download_file(bucket, keys[0], str(tmp_path / "t.coverage"))
    data = coverage.CoverageData(basename=str(tmp_path / "t.coverage"))
    data.read()
    work = next(name for name in data.measured_files() if name.endswith("work.py"))
    assert {3, 4} <= set(data.lines(work) or [])
