"""Code identity and source snapshots, delivered by the Deliverer to moto server over HTTP.

The runtime and the extension each have a Deliverer on one spool; here two
Deliverers on one spool stand for them. A proxy in front of moto (tests/support/
s3_proxy.py) counts the requests and refuses the ones moto cannot.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import coverage
import pytest

from coverage_wrapper import identity, sources
from coverage_wrapper.delivery import Deliverer
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Delta
from coverage_wrapper.s3_uploader import S3Uploader
from coverage_wrapper.spool import SpoolDirectory
from tests.support.oracle import ORDERS, SUPPORT
from tests.support.s3_proxy import S3Proxy

LAMBDA = {
    "AWS_LAMBDA_FUNCTION_NAME": "orders",
    "AWS_LAMBDA_FUNCTION_VERSION": "7",
    "LAMBDA_TASK_ROOT": "/var/task",
}


@pytest.fixture(autouse=True)
def _in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LAMBDA.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[S3Proxy]:
    with S3Proxy(moto_endpoint) as running:
        yield running


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """What the delivery and sources loggers write (they do not propagate)."""
    found: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(f"coverage_wrapper.{n}") for n in ("delivery", "sources")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield found
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def deliverer(tmp_path: Path, bucket: str, endpoint: str, **env: str) -> Deliverer:
    """A Deliverer on the spool under tmp_path; a second one on it is another process."""
    config = CoverageConfig.from_environment(
        {"COVERAGE_S3_BUCKET": bucket, "COVERAGE_SPOOL_DIR": str(tmp_path / "spool"), **env}
    )
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return Deliverer(config, SpoolDirectory(config.spool_dir), S3Uploader(config, client), "orders")


def app(tmp_path: Path, name: str = "app.py", text: str = "def handler():\n    return 1\n") -> Path:
    path = tmp_path / "task" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def downloaded(s3: Any, bucket: str, key: str, tmp_path: Path) -> Path:
    path = tmp_path / f"download-{time.monotonic_ns()}.coverage"
    s3.download_file(bucket, key, str(path))
    return path


SETS = "coverage/sources/sets/"


def source_keys(s3: Any, bucket: str, prefix: str = "coverage/sources/") -> list[str]:
    """The source snapshots in the bucket (without the markers of sets, unless asked)."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    keys = sorted(item["Key"] for item in listed)
    return keys if prefix == SETS else versions(keys)


def test_a_marker_older_than_a_day_is_checked_again_and_a_lost_version_sent_again(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, util = app(tmp_path), app(tmp_path, "util.py", "X = 1\n")
    delta = Delta("lines", {str(handler): {1}, str(util): {1}})
    lost = identity.source_key("coverage/", sha256(util))
    first = deliverer(tmp_path / "a", bucket, proxy.endpoint)
    first.spool.write(delta, "r1")
    assert first.deliver(deadline=float("inf")).failed == []
    s3.delete_object(Bucket=bucket, Key=lost)  # expired, or deleted by hand

    # Within the day the marker is believed: the lost version is not missed yet.
    second = deliverer(tmp_path / "b", bucket, proxy.endpoint)
    second.spool.write(delta, "r1")
    assert second.deliver(deadline=float("inf")).sources == []

    # A marker older than that is not: each version is asked for, the lost one sent again,
    # and the marker written anew.
    monkeypatch.setattr(sources, "SET_TRUSTED_SECONDS", 0)
    marker = identity.source_set_key("coverage/", [sha256(handler), sha256(util)])
    before = s3.head_object(Bucket=bucket, Key=marker)["LastModified"]
    time.sleep(1.1)  # S3 dates objects to the second
    third = deliverer(tmp_path / "c", bucket, proxy.endpoint)
    third.spool.write(delta, "r1")
    assert third.deliver(deadline=float("inf")).sources == [lost]
    assert s3.get_object(Bucket=bucket, Key=lost)["Body"].read() == util.read_bytes()
    assert s3.head_object(Bucket=bucket, Key=marker)["LastModified"] > before


def versions(keys: list[str]) -> list[str]:
    """The keys of source snapshots among ``keys``, without the markers of sets."""
    return [key for key in keys if not key.startswith(SETS)]


def test_a_set_is_marked_once_every_version_is_in_s3_and_then_asked_for_alone(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str
) -> None:
    handler, util = app(tmp_path), app(tmp_path, "util.py", "X = 1\n")
    delta = Delta("lines", {str(handler): {1}, str(util): {1}})
    marker = identity.source_set_key("coverage/", [sha256(handler), sha256(util)])

    # A version that cannot be sent (deleted after it ran): its set is not marked.
    gone = app(tmp_path, "gone.py", "Y = 2\n")
    first = deliverer(tmp_path / "a", bucket, proxy.endpoint)
    first.spool.write(Delta("lines", {**delta.files, str(gone): {1}}), "r1")
    first.snapshots.note({str(gone): sha256(gone)})
    gone.unlink()
    assert first.deliver(deadline=float("inf")).failed == []
    assert source_keys(s3, bucket, SETS) == []

    # Every version in S3 (sent, or found): the set is marked, after them.
    second = deliverer(tmp_path / "b", bucket, proxy.endpoint)
    second.spool.write(delta, "r1")
    assert second.deliver(deadline=float("inf")).failed == []
    assert source_keys(s3, bucket, SETS) == [marker]
    assert proxy.sent("PUT", SETS) == [marker] and proxy.sent("HEAD", SETS)[-1] == marker

    # The next environment with those versions: one HEAD, no version asked for by itself.
    count = len(proxy.requests)
    third = deliverer(tmp_path / "c", bucket, proxy.endpoint)
    third.spool.write(delta, "r1")
    report = third.deliver(deadline=float("inf"))
    assert report.failed == [] and report.sources == [] and not third.has_pending()
    asked = [request for request in proxy.requests[count:] if "/sources/" in request[1]]
    assert asked == [("HEAD", marker)]

    # A marker S3 will not show (403: a role that may write but not read) is no answer:
    # each version is asked for by itself, as before markers.
    proxy.refusals[("HEAD", SETS)] = (403, "AccessDenied")
    count = len(proxy.requests)
    fourth = deliverer(tmp_path / "d", bucket, proxy.endpoint)
    fourth.spool.write(delta, "r1")
    assert fourth.deliver(deadline=float("inf")).failed == []
    asked = [request for request in proxy.requests[count:] if "/sources/" in request[1]]
    assert sorted(key for method, key in asked if method == "HEAD" and SETS not in key) == sorted(
        identity.source_key("coverage/", sha256(path)) for path in (handler, util)
    )
    assert not fourth.has_pending()


def test_the_object_carries_its_identity_and_each_version_is_uploaded_once(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str
) -> None:
    handler, util = app(tmp_path), app(tmp_path, "util.py", "X = 1\n")
    runtime = deliverer(tmp_path, bucket, proxy.endpoint)
    runtime.spool.write(Delta("lines", {str(handler): {1, 2}, str(util): {1}}), "r1")

    report = runtime.deliver(deadline=float("inf"))

    assert report.failed == [] and len(report.uploaded) == 1
    data_file = downloaded(s3, bucket, report.uploaded[0], tmp_path)
    with sqlite3.connect(data_file) as connection:
        rows = dict(connection.execute("select key, value from meta"))
    # When the environment started: when its id was made, to the second.
    started = (runtime.spool.root / "environment-id").stat().st_mtime
    assert {k: v for k, v in rows.items() if k.startswith(identity.PREFIX)} == {
        "lambdacov:function": "orders",
        "lambdacov:function_version": "7",
        "lambdacov:task_root": "/var/task",
        "lambdacov:started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        f"lambdacov:sha256:{handler}": sha256(handler),
        f"lambdacov:sha256:{util}": sha256(util),
    }
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    assert data.lines(str(handler)) == [1, 2] and data.lines(str(util)) == [1]

    expected = sorted(f"coverage/sources/{sha256(p)}" for p in (handler, util))
    assert sorted(report.sources) == expected == source_keys(s3, bucket)
    for path in (handler, util):
        key = f"coverage/sources/{sha256(path)}"
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ContentType"] == "text/x-python"
        # The digest goes as the PUT's checksum: S3 refuses other bytes (moto does not check).
        checksum = proxy.headers_of("PUT", key)["x-amz-checksum-sha256"]
        assert checksum == base64.b64encode(bytes.fromhex(sha256(path))).decode()
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == path.read_bytes()
    assert versions(proxy.sent("PUT", "coverage/sources/")) == expected  # HEAD, then a PUT each

    # More lines in the same files: the data object is rewritten, no version is sent again,
    # by this process or by the other one sharing the spool (the extension).
    extension = deliverer(tmp_path, bucket, proxy.endpoint)
    extension.spool.write(Delta("lines", {str(handler): {3}}), "r2")
    again = extension.deliver(deadline=float("inf"))
    assert again.uploaded == report.uploaded and again.sources == []
    assert versions(proxy.sent("PUT", "coverage/sources/")) == expected
    assert versions(proxy.sent("HEAD", "coverage/sources/")) == expected  # nor asked again
    assert not extension.has_pending()


def test_a_version_another_environment_uploaded_is_not_sent_again(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str
) -> None:
    handler = app(tmp_path)
    for environment in ("a", "b"):  # two environments: two spools, one bucket
        runtime = deliverer(tmp_path / environment, bucket, proxy.endpoint)
        runtime.spool.write(Delta("lines", {str(handler): {1}}), environment)
        assert runtime.deliver(deadline=float("inf")).failed == []
    key = f"coverage/sources/{sha256(handler)}"
    assert proxy.sent("HEAD", "coverage/sources/") == [key, key]
    assert proxy.sent("PUT", "coverage/sources/") == [key]
    assert source_keys(s3, bucket) == [key]


def test_a_head_refused_with_403_is_answered_with_a_put(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str, records: list[logging.LogRecord]
) -> None:
    # A role with s3:PutObject but no s3:GetObject: S3 will not say whether the key exists.
    proxy.refusals[("HEAD", "coverage/sources/")] = (403, "AccessDenied")
    handler = app(tmp_path)
    runtime = deliverer(tmp_path, bucket, proxy.endpoint)
    runtime.spool.write(Delta("lines", {str(handler): {1}}), "r1")
    report = runtime.deliver(deadline=float("inf"))
    assert report.failed == []
    assert source_keys(s3, bucket) == [f"coverage/sources/{sha256(handler)}"]
    assert [r for r in records if r.levelno >= logging.WARNING] == []


def test_sources_are_encrypted_with_the_kms_key_as_the_data_is(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    handler = app(tmp_path)
    runtime = deliverer(tmp_path, bucket, moto_endpoint, COVERAGE_KMS_KEY_ID=key_id)
    runtime.spool.write(Delta("lines", {str(handler): {1}}), "r1")
    report = runtime.deliver(deadline=float("inf"))
    assert len(report.sources) == 1
    for key in (*report.uploaded, *report.sources):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith(key_id)


def test_no_sources_with_upload_sources_false_and_the_identity_is_still_recorded(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str
) -> None:
    handler = app(tmp_path)
    runtime = deliverer(tmp_path, bucket, proxy.endpoint, COVERAGE_UPLOAD_SOURCES="false")
    runtime.spool.write(Delta("lines", {str(handler): {1}}), "r1")
    report = runtime.deliver(deadline=float("inf"))
    assert report.sources == [] and source_keys(s3, bucket) == []
    assert proxy.sent("HEAD", "coverage/sources/") == []
    assert identity.recorded(downloaded(s3, bucket, report.uploaded[0], tmp_path)) == {
        str(handler): sha256(handler)
    }
    assert not runtime.has_pending()  # nothing waits for a pass that will never come


def test_a_file_over_the_size_cap_is_identified_but_not_uploaded(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str, records: list[logging.LogRecord]
) -> None:
    small = app(tmp_path)
    big = app(tmp_path, "generated.py", "#" * sources.MAX_SOURCE_BYTES + "\n")
    runtime = deliverer(tmp_path, bucket, proxy.endpoint)
    runtime.spool.write(Delta("lines", {str(small): {1}, str(big): {1}}), "r1")
    report = runtime.deliver(deadline=float("inf"))
    assert report.failed == []
    assert source_keys(s3, bucket) == [f"coverage/sources/{sha256(small)}"]
    assert proxy.sent("PUT", f"coverage/sources/{sha256(big)}") == []
    rows = identity.recorded(downloaded(s3, bucket, report.uploaded[0], tmp_path))
    assert rows[str(big)] == sha256(big)
    assert any(r.levelno == logging.DEBUG and "larger than" in r.getMessage() for r in records), (
        records
    )
    assert not runtime.has_pending()  # settled: not tried again


def test_a_file_changed_since_it_was_hashed_is_settled_not_retried(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str, records: list[logging.LogRecord]
) -> None:
    # S3 refuses a body whose sha256 is not the checksum sent with it (moto does not check).
    proxy.refusals[("PUT", "coverage/sources/")] = (400, "BadDigest")
    handler = app(tmp_path)
    runtime = deliverer(tmp_path, bucket, proxy.endpoint)
    runtime.spool.write(Delta("lines", {str(handler): {1}}), "r1")
    report = runtime.deliver(deadline=float("inf"))
    assert report.failed == [] and report.sources == [] and len(report.uploaded) == 1
    assert [r for r in records if r.levelno >= logging.WARNING] == []
    assert not runtime.has_pending()
    assert len(proxy.sent("PUT", "coverage/sources/")) == 1


def test_sources_left_by_a_failure_or_the_deadline_are_sent_on_a_later_pass(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str
) -> None:
    handler, util = app(tmp_path), app(tmp_path, "util.py", "X = 1\n")
    proxy.refusals[("PUT", "coverage/sources/")] = (503, "SlowDown")
    runtime = deliverer(tmp_path, bucket, proxy.endpoint)
    runtime.spool.write(Delta("lines", {str(handler): {1}, str(util): {1}}), "r1")
    report = runtime.deliver(deadline=float("inf"))
    assert len(report.uploaded) == 1  # the data went; the sources wait
    assert [error.code for error in report.failed] == ["SlowDown"]
    assert source_keys(s3, bucket) == []
    assert runtime.has_pending()  # so the extension makes a pass without new data

    # Out of time: nothing is started, nothing is lost.
    proxy.refusals.clear()
    extension = deliverer(tmp_path, bucket, proxy.endpoint)
    late = extension.deliver(deadline=time.monotonic() - 1)
    assert late.deferred and late.sources == [] and extension.has_pending()

    done = extension.deliver(deadline=float("inf"))
    assert done.failed == [] and done.uploaded == []  # no new data: the sources alone
    assert sorted(done.sources) == source_keys(s3, bucket)
    assert source_keys(s3, bucket) == sorted(
        f"coverage/sources/{sha256(p)}" for p in (handler, util)
    )
    assert not extension.has_pending()


def test_a_failed_stamp_is_one_warning_and_the_data_is_delivered(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str, records: list[logging.LogRecord]
) -> None:
    handler = app(tmp_path, text="a = 1\nb = 2\nc = 3\n")
    runtime = deliverer(tmp_path, bucket, proxy.endpoint)
    runtime.spool.write(Delta("lines", {str(handler): {1}}), "r1")
    runtime.deliver(deadline=float("inf"))
    # The aggregate now refuses the rows (as a damaged or read-only file would).
    with sqlite3.connect(runtime.spool.aggregate_path) as connection:
        connection.execute("delete from meta where key like 'lambdacov:%'")
        connection.execute(
            "create trigger refuse before insert on meta when new.key like 'lambdacov:%'"
            " begin select raise(abort, 'refused'); end"
        )
    for number, line in enumerate((2, 3)):
        runtime.spool.write(Delta("lines", {str(handler): {line}}), f"r{number + 2}")
        report = runtime.deliver(deadline=float("inf"))
        assert report.failed == [] and len(report.uploaded) == 1
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].getMessage().startswith("Code identity not recorded: IntegrityError")
    data = coverage.CoverageData(basename=str(downloaded(s3, bucket, report.uploaded[0], tmp_path)))
    data.read()
    assert data.lines(str(handler)) == [1, 2, 3]


def test_invocation_objects_each_carry_the_identity_hashed_once(
    tmp_path: Path, proxy: S3Proxy, s3: Any, bucket: str
) -> None:
    handler = app(tmp_path, text="a = 1\nb = 2\n")
    first_digest = sha256(handler)
    runtime = deliverer(tmp_path, bucket, proxy.endpoint, COVERAGE_FLUSH="invocation")
    runtime.spool.write(Delta("lines", {str(handler): {1}}), "request-1")
    first = runtime.deliver(deadline=float("inf"))
    # The file is not read again in this environment: had it been, this would show.
    handler.write_text("a = 'changed'\nb = 2\n")
    extension = deliverer(tmp_path, bucket, proxy.endpoint, COVERAGE_FLUSH="invocation")
    extension.spool.write(Delta("lines", {str(handler): {2}}), "request-2")
    second = extension.deliver(deadline=float("inf"))

    keys = [*first.uploaded, *second.uploaded]
    assert [key.rsplit("-", 2)[-2:] for key in keys] == [
        ["request", "1.coverage"],
        ["request", "2.coverage"],
    ]
    for key in keys:
        path = downloaded(s3, bucket, key, tmp_path)
        assert identity.recorded(path) == {str(handler): first_digest}
        with sqlite3.connect(path) as connection:
            rows = dict(connection.execute("select key, value from meta"))
        assert rows[identity.FUNCTION] == "orders" and rows[identity.TASK_ROOT] == "/var/task"
    assert first.sources == [f"coverage/sources/{first_digest}"] and second.sources == []


def test_the_runtime_delivering_by_itself_hashes_each_file_once(
    tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str
) -> None:
    # No extension: the runtime delivers within the invocations, one object per request.
    # app.py is deleted after the first event; the later objects that measured it still
    # say which bytes ran, which only a digest kept from the first hashing can tell.
    code = tmp_path / "code"
    shutil.copytree(ORDERS, code, ignore=shutil.ignore_patterns("__pycache__"))
    digests = {str(path): sha256(path) for path in code.rglob("*.py")}
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    environment.update(
        AWS_ENDPOINT_URL=moto_endpoint,
        LAMBDA_TASK_ROOT=str(code),
        LAMBDACOV_ORIGINAL_HANDLER="app.handler",
        LAMBDACOV_TEST_UNLINK_AFTER=f"1:{code / 'app.py'}",
        COVERAGE_S3_BUCKET=bucket,
        COVERAGE_SPOOL_DIR=str(tmp_path / "spool"),
        COVERAGE_FLUSH="invocation",
    )
    subprocess.run(
        [
            sys.executable,
            str(SUPPORT / "drive_handler.py"),
            str(code),
            str(ORDERS / "events.json"),
            str(tmp_path / "results.json"),
        ],
        env=environment,
        check=True,
        timeout=120,
    )
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    keys = [item["Key"] for item in listed if item["Key"].endswith(".coverage")]
    with_app = 0
    recorded: set[str] = set()
    for key in keys:
        path = downloaded(s3, bucket, key, tmp_path)
        data = coverage.CoverageData(basename=str(path))
        data.read()
        assert identity.recorded(path) == {name: digests[name] for name in data.measured_files()}
        recorded |= set(identity.recorded(path).values())
        with_app += str(code / "app.py") in data.measured_files()
    assert with_app > 1  # app.py ran new lines after it was deleted
    # app.py's bytes went in the first invocation's pass, before it was deleted.
    assert digests[str(code / "app.py")] in recorded
    assert source_keys(s3, bucket) == sorted(f"coverage/sources/{d}" for d in recorded)
