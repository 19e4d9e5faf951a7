"""The reader's view of code identity rows: versions kept apart, bad rows refused."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import coverage
import pytest

from coverage_wrapper import identity
from coverage_wrapper.datafiles import (
    Merger,
    bits_to_lines,
    read_data_file,
    split_version,
    versioned,
)
from coverage_wrapper.datawriter import InvalidDataFileError, add_to_data_file
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


def test_a_file_named_like_a_stored_version_keeps_its_own_name(tmp_path: Path) -> None:
    # Two versions of app.py are stored as "app.py#<digest>": a measured file that is
    # really called that must neither collide with it nor lend it its lines.
    real = f"/var/task/app.py#{A}"
    merger = Merger()
    for digest, lines in ((A, [1]), (B, [2])):
        source = write_data(tmp_path / f"{digest[0]}.coverage", {"/var/task/app.py": lines})
        merger.add(read_data_file(with_identity(source, {"/var/task/app.py": digest})))
    merger.add(read_data_file(write_data(tmp_path / "real.coverage", {real: [9]})))
    written = merger.result().write(tmp_path / "combined.coverage")
    again = read_data_file(written)
    found = {split_version(name): bits_to_lines(bits) for (name, _), bits in again.lines.items()}
    assert found == {
        ("/var/task/app.py", A): [1],
        ("/var/task/app.py", B): [2],
        (real, None): [9],
    }


def test_adding_to_a_damaged_data_file_is_refused_before_anything_is_added(
    tmp_path: Path,
) -> None:
    path = tmp_path / "aggregate.coverage"
    add_to_data_file(path, "lines", {f"/var/task/m{n}.py": range(1, 200) for n in range(300)})
    with contextlib.closing(sqlite3.connect(path)) as db:
        root = db.execute("select rootpage from sqlite_master where name = 'file'").fetchone()[0]
    page = 4096
    with path.open("r+b") as handle:  # scribble over the header of the file table's root page
        handle.seek((root - 1) * page)
        handle.write(b"\xff" * 12)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        add_to_data_file(path, "lines", {"/var/task/new.py": [1]})


KILLED_WRITER = """
import sys
from pathlib import Path
from coverage_wrapper.datawriter import add_to_data_file
print("ready", flush=True)
add_to_data_file(Path(sys.argv[1]), "arcs",
                 {f"/var/task/m{n}.py": [(i, i + 1) for i in range(3, 63)] for n in range(2000)})
"""


def test_a_writer_killed_mid_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "aggregate.coverage"
    # Enough rows that SQLite writes pages to the file before the commit (its page cache
    # spills), which is where a write killed without a journal on disk leaves damage.
    before = {f"/var/task/m{n}.py": [(1, 2), (2, -1)] for n in range(2000)}
    add_to_data_file(path, "arcs", before)
    for delay in (0.05, 0.1, 0.15, 0.2, 0.3):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        # The next writer rolls the journal back (or finds the whole write committed).
        add_to_data_file(path, "arcs", {"/var/task/after.py": [(1, -1)]})
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        arcs = read_data_file(path).arcs
        assert {name for name, _ in arcs} == set(before) | {"/var/task/after.py"}
        counts = {len(found) for (name, _), found in arcs.items() if name != "/var/task/after.py"}
        assert counts in ({2}, {62})  # the killed write whole, or not at all
