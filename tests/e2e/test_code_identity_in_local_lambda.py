"""Code identity and source snapshots end to end: the layer built by build-layer, run by the
real awslambdaric in the local Lambda emulator, delivering to moto server over HTTP (through
a proxy that counts the requests).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import coverage
import pytest

from coverage_wrapper import identity
from lambdacov.local import LocalLambda
from tests.support.oracle import ORDERS, measured, run_oracle
from tests.support.s3_proxy import S3Proxy

pytestmark = pytest.mark.e2e

WRAPPER = {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambdacov-wrapper"}
SOURCES = "coverage/sources/"
SETS = SOURCES + "sets/"


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return json.loads((ORDERS / "events.json").read_text())


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[S3Proxy]:
    with S3Proxy(moto_endpoint) as running:
        yield running


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listed(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    found = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in found)


def data_objects(s3: Any, bucket: str) -> list[str]:
    return [key for key in listed(s3, bucket) if key.endswith(".coverage")]


def versions(keys: list[str]) -> list[str]:
    """The keys of source snapshots among ``keys``, without the markers of sets."""
    return [key for key in keys if not key.startswith(SETS)]


def fetch(s3: Any, bucket: str, key: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The object, downloaded, and the rows of its meta table."""
    path = tmp_path / key.replace("/", "_")
    s3.download_file(bucket, key, str(path))
    with sqlite3.connect(path) as connection:
        return path, dict(connection.execute("select key, value from meta"))


def run_environment(
    function_dir: Path, layer: Path, env: dict[str, str], events: list[dict[str, Any]]
) -> None:
    """One execution environment: the events, then SHUTDOWN."""
    with LocalLambda(
        function_dir, "app.handler", layer=layer, env=env, function_name="orders"
    ) as function:
        for event in events:
            function.invoke(event)
        function.shutdown()
    errors = [line.text for line in function.logs if '"level": "ERROR"' in line.text]
    assert errors == []


def test_the_object_says_which_code_ran_where_and_reads_as_before(
    host_layer: Path,
    proxy: S3Proxy,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
) -> None:
    expected, _ = run_oracle(ORDERS, ORDERS / "events.json", tmp_path)
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": proxy.endpoint}
    before = datetime.now(UTC).replace(microsecond=0)
    run_environment(ORDERS, host_layer, env, events)

    (key,) = data_objects(s3, bucket)
    path, rows = fetch(s3, bucket, key, tmp_path)
    data = coverage.CoverageData(basename=str(path))
    data.read()
    assert measured(data, ORDERS, branch=False) == expected  # coverage.py reads it as before
    names = data.measured_files()
    assert str(ORDERS / "app.py") in names
    # The environment started before its first object was written, this run.
    started = datetime.fromisoformat(rows.pop(identity.STARTED))
    assert before <= started <= datetime.now(UTC)
    assert {k: v for k, v in rows.items() if k.startswith(identity.PREFIX)} == {
        "lambdacov:function": "orders",
        "lambdacov:function_version": "$LATEST",
        "lambdacov:task_root": str(ORDERS),
        **{f"lambdacov:sha256:{name}": sha256(name) for name in names},
    }

    # Each file's bytes, once, encrypted as the data is.
    snapshots = listed(s3, bucket, SOURCES)
    assert versions(snapshots) == sorted(SOURCES + sha256(name) for name in names)
    assert any(key.startswith(SETS) for key in snapshots)  # each set marked once all were in
    for name in names:
        source = SOURCES + sha256(name)
        assert s3.get_object(Bucket=bucket, Key=source)["Body"].read() == Path(name).read_bytes()
        assert s3.head_object(Bucket=bucket, Key=source)["ServerSideEncryption"] == "AES256"
    assert len(versions(proxy.sent("PUT", SOURCES))) == len(names)


def test_an_environment_running_known_versions_asks_once_per_set_not_per_file(
    host_layer: Path, proxy: S3Proxy, s3: Any, bucket: str, events: list[dict[str, Any]]
) -> None:
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": proxy.endpoint}
    run_environment(ORDERS, host_layer, env, events)
    first_heads = proxy.sent("HEAD", SOURCES)
    first_puts = proxy.sent("PUT", SOURCES)
    assert len(versions(first_heads)) > 1  # the first environment asks for each file
    marked = [key for key in first_puts if key.startswith(SETS)]
    assert marked and all(proxy.headers_of("PUT", key) for key in marked)

    # The same code, the same events, another environment: each of its deliveries finds
    # its set marked, so it asks for no version by itself and sends none.
    count = len(proxy.requests)
    run_environment(ORDERS, host_layer, env, events)
    second = [(method, key) for method, key in proxy.requests[count:] if key.startswith(SOURCES)]
    assert second and all(method == "HEAD" and key in marked for method, key in second), second
    assert len(data_objects(s3, bucket)) == 2


def test_each_file_version_is_uploaded_once_across_environments_and_deploys(
    host_layer: Path,
    proxy: S3Proxy,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
) -> None:
    code = tmp_path / "code"
    shutil.copytree(ORDERS, code, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**WRAPPER, "COVERAGE_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": proxy.endpoint}
    old_app = sha256(code / "app.py")
    for part in (events[:4], events[4:]):  # two environments of one deploy
        run_environment(code, host_layer, env, part)
    first_deploy = set(listed(s3, bucket, SOURCES))
    assert len(data_objects(s3, bucket)) == 2
    assert SOURCES + old_app in first_deploy

    # A deploy changes app.py: the same path, other bytes, a third environment.
    (code / "app.py").write_text((code / "app.py").read_text() + "\n# deployed again\n")
    new_app = sha256(code / "app.py")
    run_environment(code, host_layer, env, events)

    assert set(versions(listed(s3, bucket, SOURCES))) == set(versions(list(first_deploy))) | {
        SOURCES + new_app
    }
    puts = versions(proxy.sent("PUT", SOURCES))
    assert sorted(puts) == sorted(set(puts))  # no version sent twice, fleet-wide
    assert (
        s3.get_object(Bucket=bucket, Key=SOURCES + new_app)["Body"]
        .read()
        .endswith(b"# deployed again\n")
    )
    app_digests = []
    for key in data_objects(s3, bucket):
        _, rows = fetch(s3, bucket, key, tmp_path)
        app_digests.append(rows[f"lambdacov:sha256:{code / 'app.py'}"])
    assert sorted(app_digests) == sorted([old_app, old_app, new_app])


def test_no_source_is_uploaded_with_upload_sources_false(
    host_layer: Path,
    proxy: S3Proxy,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    events: list[dict[str, Any]],
) -> None:
    env = {
        **WRAPPER,
        "COVERAGE_S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": proxy.endpoint,
        "COVERAGE_UPLOAD_SOURCES": "false",
    }
    run_environment(ORDERS, host_layer, env, events)
    assert listed(s3, bucket, SOURCES) == []
    assert proxy.sent("HEAD", SOURCES) == [] and proxy.sent("PUT", SOURCES) == []
    (key,) = data_objects(s3, bucket)
    _, rows = fetch(s3, bucket, key, tmp_path)
    assert rows[f"lambdacov:sha256:{ORDERS / 'app.py'}"] == sha256(ORDERS / "app.py")
