"""The source snapshots' switch and the ledger the runtime and the extension share."""

from __future__ import annotations

from pathlib import Path

import pytest

from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.s3_uploader import S3Uploader
from coverage_wrapper.sources import Ledger, Snapshots


def config(**env: str) -> CoverageConfig:
    return CoverageConfig.from_environment({"COVERAGE_S3_BUCKET": "bucket", **env})


def test_sources_are_uploaded_unless_switched_off() -> None:
    assert config().upload_sources is True
    for value in ("false", "0", " Off ", "no"):
        assert config(COVERAGE_UPLOAD_SOURCES=value).upload_sources is False
    assert config(COVERAGE_UPLOAD_SOURCES="yes").upload_sources is True
    with pytest.raises(ValueError, match="COVERAGE_UPLOAD_SOURCES must be true or false"):
        config(COVERAGE_UPLOAD_SOURCES="later")
    assert config().to_dict()["upload_sources"] is True  # shown in debug logs


def test_the_ledger_round_trips_and_forgets_what_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    Ledger({"/var/task/app.py": "a" * 64}, {"b" * 64}).write(path)
    assert Ledger.read(path) == Ledger({"/var/task/app.py": "a" * 64}, {"b" * 64})
    assert [p.name for p in tmp_path.iterdir()] == ["sources.json"]  # no temp file left
    damaged = ("{not json", '{"format": 99, "files": {}, "settled": []}', "[]", '{"format": 1}')
    for text in damaged:
        path.write_text(text)
        assert Ledger.read(path) == Ledger()
    assert Ledger.read(tmp_path / "missing.json") == Ledger()
    assert Ledger.read(tmp_path) == Ledger()  # a directory


def test_noting_files_marks_the_environment_waiting_only_for_new_versions(
    tmp_path: Path,
) -> None:
    snapshots = Snapshots(tmp_path, S3Uploader(config()), "coverage/")
    snapshots.note({})
    assert not snapshots.waiting() and not snapshots.path.exists()
    Ledger({}, {"a" * 64}).write(snapshots.path)  # a version already settled here
    snapshots.note({"/var/task/copy.py": "a" * 64})
    assert not snapshots.waiting()
    assert snapshots.known() == {"/var/task/copy.py": "a" * 64}
    snapshots.note({"/var/task/app.py": "c" * 64})
    assert snapshots.waiting()
    assert snapshots.known() == {"/var/task/copy.py": "a" * 64, "/var/task/app.py": "c" * 64}
