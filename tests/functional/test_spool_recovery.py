"""The spool survives damage: a broken aggregate, foreign and corrupt deltas."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import coverage

from coverage_wrapper.delivery import Deliverer
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.recorder import Delta
from coverage_wrapper.s3_uploader import S3Uploader
from coverage_wrapper.spool import SpoolDirectory


def deliverer(tmp_path: Path, bucket: str, s3: Any) -> Deliverer:
    config = CoverageConfig.from_environment(
        {"COVERAGE_S3_BUCKET": bucket, "COVERAGE_SPOOL_DIR": str(tmp_path / "spool")}
    )
    spool = SpoolDirectory(config.spool_dir)
    return Deliverer(config, spool, S3Uploader(config, client=s3), "fn")


def lines(s3: Any, bucket: str, key: str, tmp_path: Path) -> dict[str, list[int]]:
    path = tmp_path / "download.coverage"
    s3.download_file(bucket, key, str(path))
    data = coverage.CoverageData(basename=str(path))
    data.read()
    return {name: data.lines(name) or [] for name in data.measured_files()}


def test_a_damaged_aggregate_starts_a_new_object_and_keeps_the_old_one(
    tmp_path: Path, s3: Any, bucket: str
) -> None:
    first = deliverer(tmp_path, bucket, s3)
    first.spool.write(Delta("lines", {"/var/task/a.py": {1, 2}}), "r1")
    report = first.deliver(deadline=float("inf"))
    assert len(report.uploaded) == 1
    old_key = report.uploaded[0]

    # A process killed while writing leaves a file SQLite cannot read.
    first.spool.aggregate_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 100)
    first.spool.write(Delta("lines", {"/var/task/a.py": {3}}), "r2")
    report = deliverer(tmp_path, bucket, s3).deliver(deadline=float("inf"))

    assert len(report.uploaded) == 1 and report.uploaded[0] != old_key
    assert lines(s3, bucket, old_key, tmp_path) == {"/var/task/a.py": [1, 2]}  # not overwritten
    assert lines(s3, bucket, report.uploaded[0], tmp_path) == {"/var/task/a.py": [3]}
    assert len(list(first.spool.corrupt_dir.iterdir())) == 1


def test_unreadable_and_foreign_deltas_are_set_aside_not_lost_or_retried(
    tmp_path: Path, s3: Any, bucket: str
) -> None:
    d = deliverer(tmp_path, bucket, s3)
    d.spool.write(Delta("lines", {"/var/task/a.py": {1}}), "good")
    d.spool.write(Delta("arcs", {"/var/task/a.py": {(1, 2)}}), "branch-data")
    (d.spool.pending_dir / "99999999999999999999-1-1.json").write_text("{not json")
    report = d.deliver(deadline=float("inf"))
    assert len(report.uploaded) == 1 and len(report.corrupt) == 2
    assert d.spool.pending() == []
    assert lines(s3, bucket, report.uploaded[0], tmp_path) == {"/var/task/a.py": [1]}


def test_a_rotated_id_is_seen_by_every_process_sharing_the_spool(
    tmp_path: Path, s3: Any, bucket: str
) -> None:
    extension = deliverer(tmp_path, bucket, s3)  # e.g. the extension, created first
    extension.spool.write(Delta("lines", {"/var/task/a.py": {1}}), "r1")
    old_key = extension.deliver(deadline=float("inf")).uploaded[0]
    extension.spool.aggregate_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 100)
    runtime = deliverer(tmp_path, bucket, s3)  # e.g. the runtime, which finds the damage
    runtime.spool.write(Delta("lines", {"/var/task/a.py": {2}}), "r2")
    new_key = runtime.deliver(deadline=float("inf")).uploaded[0]
    extension.spool.write(Delta("lines", {"/var/task/a.py": {3}}), "r3")
    assert extension.deliver(deadline=float("inf")).uploaded == [new_key]
    assert lines(s3, bucket, old_key, tmp_path) == {"/var/task/a.py": [1]}


def test_malformed_delta_shapes_are_set_aside_and_the_rest_delivered(
    tmp_path: Path, s3: Any, bucket: str
) -> None:
    d = deliverer(tmp_path, bucket, s3)
    d.spool.write(Delta("lines", {"/var/task/a.py": {4}}), "good")
    for n, files in enumerate(({"a": [None]}, {"a": [[1, 2]]}, {"a": 7})):
        document = {"format": 1, "kind": "lines", "request_id": "x", "files": files}
        (d.spool.pending_dir / f"9999999999999999999{n}-1-1.json").write_text(json.dumps(document))
    report = d.deliver(deadline=float("inf"))
    assert len(report.corrupt) == 3 and d.spool.pending() == []
    assert lines(s3, bucket, report.uploaded[0], tmp_path) == {"/var/task/a.py": [4]}


def test_delivery_never_waits_past_its_deadline_for_another_process(
    tmp_path: Path, s3: Any, bucket: str
) -> None:
    d = deliverer(tmp_path, bucket, s3)
    d.spool.write(Delta("lines", {"/var/task/a.py": {1}}), "r1")
    with d.spool.lock():  # another process is delivering
        started = time.monotonic()
        report = d.deliver(deadline=time.monotonic() + 0.2)
        waited = time.monotonic() - started
    assert report.deferred and not report.uploaded and waited < 1.0
    assert d.deliver(deadline=float("inf")).uploaded  # delivered on the next pass


def test_a_fifo_where_the_lock_goes_is_refused_at_once(tmp_path: Path) -> None:
    import os

    import pytest

    from coverage_wrapper.errors import ConfigurationError

    (tmp_path / "spool" / "state").mkdir(parents=True)
    os.mkfifo(tmp_path / "spool" / "state" / "lock")  # opening it to write would wait for ever
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="cannot be used"):
        SpoolDirectory(tmp_path / "spool").prepare()
    assert time.monotonic() - started < 5
