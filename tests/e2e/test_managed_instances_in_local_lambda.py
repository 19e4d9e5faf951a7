"""Lambda Managed Instances in the local Lambda: several runtime processes, one environment.

On Managed Instances the Python runtime forks one process per concurrent
request (awslambdaric's multi-concurrent mode, driven here for real): each
imports the function and records on its own, all share /tmp and the layer's
one extension, and nothing is frozen between invocations. Every process's
lines must reach S3, none overwritten, also from a process that died early.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import coverage
import pytest

from lambdacov.local import LocalLambda
from tests.support.oracle import measured, run_oracle

pytestmark = pytest.mark.e2e

PROCESSES = 4
FUNCTION = """\
import os
import time

SEEN = []


def small(n):
    return n + 1


def medium(n):
    total = 0
    for i in range(n):
        total += i
    return total


def large(n):
    return {"digits": len(str(n ** 20))}


def negative(n):
    raise ValueError(f"negative: {n}")


def handler(event, context):
    n = event["n"]
    SEEN.append(n)
    time.sleep(event.get("sleep", 0))
    if n < 0:
        try:
            negative(n)
        except ValueError as error:
            result = str(error)
    elif n < 5:
        result = small(n)
    elif n < 10:
        result = medium(n)
    else:
        result = large(n)
    return {"pid": os.getpid(), "result": result}
"""


def lines_of(
    s3: Any, bucket: str, key: str, version: str, root: Path, work: Path
) -> dict[str, Any]:
    path = work / f"{version}.coverage"
    s3.download_file(bucket, key, str(path), ExtraArgs={"VersionId": version})
    data = coverage.CoverageData(basename=str(path))
    data.read()
    return measured(data, root, branch=False)


def line_of(text: str) -> int:
    return next(n for n, line in enumerate(FUNCTION.splitlines(), 1) if text in line)


def delivered(s3: Any, bucket: str, root: Path, work: Path, line: int, within: float) -> bool:
    """Whether an object holding ``line`` of app.py is in S3 within ``within`` seconds."""
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            path = work / "early.coverage"
            s3.download_file(bucket, item["Key"], str(path))
            data = coverage.CoverageData(basename=str(path))
            data.read()
            if line in measured(data, root, branch=False).get("app.py", []):
                return True
        time.sleep(0.2)
    return False


def contains(bigger: dict[str, list[Any]], smaller: dict[str, list[Any]]) -> bool:
    return all(set(lines) <= set(bigger.get(name, [])) for name, lines in smaller.items())


def test_every_runtime_process_delivers_and_no_version_loses_lines(
    host_layer: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    code = tmp_path / "function"
    code.mkdir()
    (code / "app.py").write_text(FUNCTION)
    first = [{"n": n, "sleep": 0.3} for n in (1, 6, 12, -1, 2, 7, 13, 3)]
    second = [{"n": n, "sleep": 0.1} for n in (-2, 4, 9, 11)]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    env = {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper",
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    name = f"lmi-{uuid.uuid4().hex[:8]}"
    with LocalLambda(
        code,
        "app.handler",
        layer=host_layer,
        env=env,
        function_name=name,
        max_concurrency=PROCESSES,
        memory_mb=2048,  # Managed Instances give an environment gigabytes, not 128 MB
    ) as function:
        started = function.invoke({"n": 0})  # INIT: the runtime forks its processes
        assert started.ok, started.error
        api = function.environment.api  # type: ignore[union-attr]
        assert api.wait_until(lambda: api.waiting_runtime_processes == PROCESSES, 10)
        assert api.extension_names() == ["lambdacov"]
        assert api.extension_names("INVOKE") == []  # registered for SHUTDOWN alone
        with ThreadPoolExecutor(len(first)) as pool:
            results = list(pool.map(function.invoke, first))
        assert all(result.ok for result in results), [r.error for r in results]
        pids = {result.payload["pid"] for result in results}
        assert len(pids) == PROCESSES  # all of them served, side by side

        # The environment is never frozen and may live for hours: the data goes out
        # shortly after the invocations, not only at SHUTDOWN.
        assert delivered(s3, bucket, code, tmp_path, line_of('return {"digits"'), within=10)

        # One process dies between invocations (its data was checkpointed after each).
        gone = sorted(pids)[0]
        os.kill(gone, signal.SIGKILL)
        assert api.wait_until(lambda: api.waiting_runtime_processes == PROCESSES - 1, 5)
        with ThreadPoolExecutor(len(second)) as pool:
            later = list(pool.map(function.invoke, second))
        assert all(result.ok for result in later), [r.error for r in later]
        assert gone not in {result.payload["pid"] for result in later}
        time.sleep(0.2)
        function.shutdown()
        pending = list((function.tmp_dir / "lambdacov" / "pending").glob("*.json"))

    assert pending == []
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    keys = [item["Key"] for item in listed if item["Key"].endswith(".coverage")]
    assert len(keys) == 1, keys  # one environment, one object
    versions = s3.list_object_versions(Bucket=bucket, Prefix=keys[0])["Versions"]
    versions = sorted(versions, key=lambda version: version["LastModified"])
    history = [
        lines_of(s3, bucket, keys[0], version["VersionId"], code, tmp_path) for version in versions
    ]
    for older, newer in itertools.pairwise(history):
        assert contains(newer, older)  # no upload dropped what an earlier one had

    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"n": 0}, *first, *second]))
    (tmp_path / "oracle").mkdir()
    expected, _ = run_oracle(code, events, tmp_path / "oracle")
    assert history[-1] == expected
