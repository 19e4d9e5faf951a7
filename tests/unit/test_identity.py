"""Code identity in a data file: the digests, the rows, and coverage.py reading them as before."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import coverage
import pytest

from coverage_wrapper import identity


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def data_file(path: Path, lines: dict[str, list[int]]) -> Path:
    data = coverage.CoverageData(basename=str(path))
    data.add_lines(lines)
    data.close()
    return path


def meta(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as connection:
        return dict(connection.execute("select key, value from meta"))


def ours(path: Path) -> dict[str, str]:
    return {k: v for k, v in meta(path).items() if k.startswith(identity.PREFIX)}


LAMBDA = {
    "AWS_LAMBDA_FUNCTION_NAME": "orders",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "LAMBDA_TASK_ROOT": "/var/task",
    "HOME": "/root",
}


def test_origin_names_the_function_its_version_and_task_root() -> None:
    assert identity.origin(LAMBDA) == {
        "lambdacov:function": "orders",
        "lambdacov:function_version": "$LATEST",
        "lambdacov:task_root": "/var/task",
    }
    # A variable that is not set (or empty) has no row rather than an empty one.
    partial = {"AWS_LAMBDA_FUNCTION_NAME": "orders", "LAMBDA_TASK_ROOT": ""}
    assert identity.origin(partial) == {"lambdacov:function": "orders"}


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    small = source(tmp_path / "app.py", "print('hello')\n")
    assert identity.file_digest(small) == sha256(small)
    assert identity.file_digest(str(small)) == sha256(small)
    # Larger than any read buffer: the chunks add up to the whole file.
    big = tmp_path / "big.py"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    assert identity.file_digest(big) == sha256(big)


def test_file_digest_is_none_for_what_is_not_a_readable_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opened blocking, this would wait for a writer for ever
    assert identity.file_digest(fifo) is None
    assert identity.file_digest(tmp_path) is None
    assert identity.file_digest(tmp_path / "missing.py") is None
    assert identity.file_digest("bad\0name.py") is None


def test_source_key_is_under_the_prefix() -> None:
    digest = "ab" * 32
    assert identity.source_key("coverage/", digest) == f"coverage/sources/{digest}"
    assert identity.source_key("", digest) == f"sources/{digest}"


def test_stamp_writes_origin_and_one_digest_per_measured_file(tmp_path: Path) -> None:
    app = source(tmp_path / "task" / "app.py", "x = 1\n")
    lib = source(tmp_path / "task" / "lib" / "util.py", "y = 2\n")
    gone = tmp_path / "task" / "deleted.py"  # measured, then removed: no identity
    path = data_file(tmp_path / "a.coverage", {str(app): [1], str(lib): [1], str(gone): [1]})
    where = identity.origin(LAMBDA)

    stamped = identity.stamp(path, where)

    assert stamped == {str(app): sha256(app), str(lib): sha256(lib)}
    assert ours(path) == {
        **where,
        f"lambdacov:sha256:{app}": sha256(app),
        f"lambdacov:sha256:{lib}": sha256(lib),
    }
    assert identity.recorded(path) == stamped


def test_a_file_is_hashed_once_per_data_file(tmp_path: Path) -> None:
    app = source(tmp_path / "app.py", "x = 1\n")
    path = data_file(tmp_path / "a.coverage", {str(app): [1]})
    first = identity.stamp(path, {})
    app.write_text("x = 'another deploy'\n")  # not read again: the row stays
    assert identity.stamp(path, {}) == {}
    assert identity.recorded(path) == first

    # A file measured later is hashed when it first appears.
    other = source(tmp_path / "other.py", "z = 3\n")
    data = coverage.CoverageData(basename=str(path))
    data.read()
    data.add_lines({str(other): [1]})
    data.close()
    assert identity.stamp(path, {}) == {str(other): sha256(other)}
    assert identity.recorded(path) == {**first, str(other): sha256(other)}


def test_known_digests_are_used_instead_of_reading_the_file(tmp_path: Path) -> None:
    app = source(tmp_path / "app.py", "x = 1\n")
    lib = source(tmp_path / "lib.py", "y = 1\n")
    path = data_file(tmp_path / "a.coverage", {str(app): [1], str(lib): [1]})
    remembered = "0" * 64  # what an earlier data file of this environment recorded
    assert identity.stamp(path, {}, known={str(app): remembered}) == {
        str(app): remembered,
        str(lib): sha256(lib),
    }


def test_origin_rows_are_replaced_not_duplicated(tmp_path: Path) -> None:
    app = source(tmp_path / "app.py", "x = 1\n")
    path = data_file(tmp_path / "a.coverage", {str(app): [1]})
    identity.stamp(path, {identity.FUNCTION_VERSION: "1"})
    identity.stamp(path, {identity.FUNCTION_VERSION: "2"})
    assert ours(path)[identity.FUNCTION_VERSION] == "2"


def test_rows_survive_coverage_adding_to_the_file(tmp_path: Path) -> None:
    app = source(tmp_path / "app.py", "x = 1\ny = 2\n")
    path = data_file(tmp_path / "a.coverage", {str(app): [1]})
    identity.stamp(path, identity.origin(LAMBDA))
    before = ours(path)
    data = coverage.CoverageData(basename=str(path))
    data.read()
    data.add_lines({str(app): [2]})
    data.close()
    assert ours(path) == before
    assert data.lines(str(app)) == [1, 2]


def test_a_file_that_is_not_coverage_data_is_refused_whole(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("create table meta (key text, value text)")
    before = other.read_bytes()
    with pytest.raises(sqlite3.Error):
        identity.stamp(other, identity.origin(LAMBDA))
    assert other.read_bytes() == before  # no origin rows without the file rows: one transaction

    missing = tmp_path / "missing.coverage"
    with pytest.raises(sqlite3.Error):
        identity.stamp(missing, {})
    with pytest.raises(sqlite3.Error):
        identity.recorded(missing)
    assert not missing.exists()  # sqlite3 did not create it


def test_a_failing_write_leaves_no_row(tmp_path: Path) -> None:
    app = source(tmp_path / "app.py", "x = 1\n")
    path = data_file(tmp_path / "a.coverage", {str(app): [1]})
    with sqlite3.connect(path) as connection:
        connection.execute(
            "create trigger refuse before insert on meta when new.key like 'lambdacov:sha256:%'"
            " begin select raise(abort, 'refused'); end"
        )
    with pytest.raises(sqlite3.Error, match="refused"):
        identity.stamp(path, identity.origin(LAMBDA))
    assert ours(path) == {}  # the origin rows went back with the rest


def coverage_cli(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    done = subprocess.run(
        [sys.executable, "-m", "coverage", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "arcs"])
def test_coverage_reads_a_stamped_file_exactly_as_before(tmp_path: Path, branch: bool) -> None:
    app = source(
        tmp_path / "src" / "app.py", "def f(x):\n    if x:\n        return 1\n    return 2\n"
    )
    plain = coverage.CoverageData(basename=str(tmp_path / "plain.coverage"))
    if branch:
        plain.add_arcs({str(app): [(-1, 1), (1, 2), (2, 3), (3, -1)]})
    else:
        plain.add_lines({str(app): [1, 2, 3]})
    plain.close()
    stamped = tmp_path / "stamped.coverage"
    shutil.copy(tmp_path / "plain.coverage", stamped)
    assert identity.stamp(stamped, identity.origin(LAMBDA)) == {str(app): sha256(app)}

    # The API: the same files, lines and arcs.
    for name in ("plain", "stamped"):
        data = coverage.CoverageData(basename=str(tmp_path / f"{name}.coverage"))
        data.read()
        assert data.measured_files() == {str(app)}
        assert data.has_arcs() is branch
        assert data.lines(str(app)) == [1, 2, 3]
    # `coverage report`, and `coverage combine` of a stamped file with a plain one.
    reports = [
        coverage_cli("report", "--data-file", str(tmp_path / f"{name}.coverage"), cwd=tmp_path)
        for name in ("plain", "stamped")
    ]
    assert reports[0] == reports[1] and "app.py" in reports[0]
    combined = tmp_path / "combined" / ".coverage"
    combined.parent.mkdir()
    shutil.copy(tmp_path / "plain.coverage", combined.parent / ".coverage.a")
    shutil.copy(stamped, combined.parent / ".coverage.b")
    coverage_cli("combine", "--keep", cwd=combined.parent)
    again = coverage_cli("report", "--data-file", str(combined), cwd=tmp_path)
    assert again == reports[0]
