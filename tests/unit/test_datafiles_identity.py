"""The reader's view of code identity rows: versions kept apart, bad rows refused."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import coverage
import pytest

from coverage_wrapper import identity
from coverage_wrapper.datafiles import (
    InvalidDataFileError,
    Merger,
    read_data_file,
    split_version,
    versioned,
)
from tests.support.combine_data import with_identity, write_data

A, B = "a" * 64, "b" * 64


def add_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("insert or replace into meta (key, value) values (?, ?)", rows)
    return path


def test_each_file_is_named_with_its_version_and_the_origin_is_read(tmp_path: Path) -> None:
    path = with_identity(
        write_data(tmp_path / "x.coverage", {"/var/task/a.py": [1], "/var/task/b.py": [2]}),
        {"/var/task/a.py": A},
        function="orders",
    )
    data = read_data_file(path)
    assert {name for name, _ in data.lines} == {versioned("/var/task/a.py", A), "/var/task/b.py"}
    assert data.origin == {
        identity.FUNCTION: "orders",
        identity.FUNCTION_VERSION: "$LATEST",
        identity.TASK_ROOT: "/var/task",
    }


def test_a_file_under_another_task_root_is_merged_as_under_var_task(tmp_path: Path) -> None:
    path = with_identity(
        write_data(tmp_path / "x.coverage", {"/tmp/emu/task/a.py": [1], "/opt/x.py": [1]}),
        {"/tmp/emu/task/a.py": A},
        task_root="/tmp/emu/task/",
    )
    data = read_data_file(path)  # read as recorded
    assert {name for name, _ in data.lines} == {versioned("/tmp/emu/task/a.py", A), "/opt/x.py"}
    merger = Merger()
    merger.add(data)
    assert set(merger.result().measured_files()) == {versioned("/var/task/a.py", A), "/opt/x.py"}
    # The runtime, adding to its own data, keeps the paths as recorded.
    own = Merger(lambda_paths=False)
    own.add(data)
    assert set(own.result().measured_files()) == {versioned("/tmp/emu/task/a.py", A), "/opt/x.py"}


def test_two_versions_of_a_path_survive_a_write_and_a_read_with_their_object_counts(
    tmp_path: Path,
) -> None:
    merger = Merger()
    for digest, lines, copies in ((A, [1], 2), (B, [2], 1)):
        for n in range(copies):
            source = write_data(tmp_path / f"{digest[0]}{n}.coverage", {"/var/task/a.py": lines})
            merger.add(read_data_file(with_identity(source, {"/var/task/a.py": digest})))
    combined = merger.result()
    assert combined.objects == {
        versioned("/var/task/a.py", A): 2,
        versioned("/var/task/a.py", B): 1,
    }
    written = combined.write(tmp_path / "combined.coverage")
    again = Merger()
    again.add(read_data_file(written))
    assert again.result().objects == combined.objects
    assert {split_version(name) for name in again.result().measured_files()} == {
        ("/var/task/a.py", A),
        ("/var/task/a.py", B),
    }
    # coverage.py reads the file: each version under a name of its own.
    data = coverage.CoverageData(basename=str(written))
    data.read()
    assert len(data.measured_files()) == 2


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ((identity.SHA256 + "/var/task/a.py", "not-hex"), "a code identity is not a sha256"),
        ((identity.SHA256 + "/var/task/a.py", "A" * 64), "a code identity is not a sha256"),
        ((identity.OBJECTS + "/var/task/a.py", "9" * 30), "an object count is not a number"),
        ((identity.PATH + "/var/task/a.py", ""), "not a plausible path"),
        ((identity.FUNCTION, "x" * 5000), "is not a plausible value"),
    ],
)
def test_a_bad_identity_row_refuses_the_object(
    tmp_path: Path, row: tuple[str, str], reason: str
) -> None:
    path = add_rows(write_data(tmp_path / "x.coverage", {"/var/task/a.py": [1]}), [row])
    with pytest.raises(InvalidDataFileError, match=reason):
        read_data_file(path)
