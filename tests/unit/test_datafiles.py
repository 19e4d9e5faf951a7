"""The combine engine against `coverage combine` as the oracle, and against bad files."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import coverage
import pytest

from coverage_wrapper import datafiles
from coverage_wrapper.datafiles import (
    InvalidDataFileError,
    Merger,
    function_from_key,
    read_data_file,
)
from lambdacov.combine.merge import PathRemapper, merge_local
from tests.support.combine_data import (
    ORDERS,
    as_dict,
    object_name,
    oracle_combine,
    random_measurement,
    read,
    write_data,
)


def _inputs(tmp_path: Path, count: int, *, branch: bool, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return [
        write_data(
            folder / object_name(f"fn-{n % 3}"),
            random_measurement(ORDERS, rng, branch=branch),
            branch=branch,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "arcs"])
def test_same_result_as_coverage_combine(tmp_path: Path, branch: bool) -> None:
    files = _inputs(tmp_path, 40, branch=branch)
    oracle = oracle_combine(files, ORDERS, tmp_path)

    # Contexts as the files have them: identical data, contexts included.
    merger = Merger(PathRemapper(ORDERS))
    for path in files:
        merger.add(read_data_file(path))
    exact = merger.result().write(tmp_path / "exact.coverage")
    ours = read(exact)
    assert as_dict(ours) == as_dict(oracle)
    assert ours.has_arcs() == oracle.has_arcs() == branch
    assert ours.measured_contexts() == oracle.measured_contexts()

    # Per-function contexts: the same lines, and each function's own lines.
    combined, skipped = merge_local(files, ORDERS)
    assert not skipped
    labelled = read(combined.write(tmp_path / "labelled.coverage"))
    assert as_dict(labelled) == as_dict(oracle)
    assert labelled.measured_contexts() == {"fn-0", "fn-1", "fn-2"}


def test_fallback_reader_for_another_schema_gives_the_same_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _inputs(tmp_path, 5, branch=True)
    direct = [read_data_file(path) for path in files]
    monkeypatch.setattr(datafiles, "KNOWN_SCHEMA_VERSION", -1)  # every file is "other"
    via_api = [read_data_file(path) for path in files]
    assert via_api == direct


def test_mixed_line_and_branch_files_combine_as_lines(tmp_path: Path) -> None:
    lines = write_data(tmp_path / "a-1.coverage", {"/var/task/app.py": [1, 2]})
    arcs = write_data(
        tmp_path / "b-1.coverage", {"/var/task/app.py": [(-1, 5), (5, 7), (7, -1)]}, branch=True
    )
    combined, skipped = merge_local([lines, arcs])
    assert not skipped
    assert combined.mixed and combined.kind == "lines"
    assert combined.executed_lines("/var/task/app.py") == {1, 2, 5, 7}


def _sqlite_without_coverage(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("create table t (x)")
    connection.close()


def _bad_numbits(path: Path) -> None:
    write_data(path, {"/var/task/app.py": [1]})
    with sqlite3.connect(path) as connection:
        connection.execute("update line_bits set numbits = 'text'")
    connection.close()


def _dangling_file_id(path: Path) -> None:
    write_data(path, {"/var/task/app.py": [1]})
    with sqlite3.connect(path) as connection:
        connection.execute("delete from file")
    connection.close()


def _truncated(path: Path) -> None:
    write_data(path, {f"/var/task/m{n}.py": list(range(1, 200)) for n in range(200)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _old_schema(path: Path) -> None:
    write_data(path, {"/var/task/app.py": [1]})
    with sqlite3.connect(path) as connection:
        connection.execute("update coverage_schema set version = 3")
    connection.close()


def _bad_arc(column: str, value: str, *, declared: str = "integer") -> Callable[[Path], None]:
    """A branch data file whose first arc's ``column`` is ``value`` (an SQL expression).

    ``declared`` is the type the file declares for the arc table's line numbers:
    coverage.py declares integer, a hostile file may declare anything.
    """

    def make(path: Path) -> None:
        # 1, 10 and 107 pass the range check even compared as text (they sort before
        # "1073741824"), as a text column's values would be compared without the
        # reader's care: only ``value`` is wrong, and must be what gets the file refused.
        write_data(path, {"/var/task/app.py": [(1, 10), (10, 107), (107, 1)]}, branch=True)
        with sqlite3.connect(path) as connection:
            if declared != "integer":
                connection.executescript(
                    f"create table arc2 (file_id integer, context_id integer, "
                    f"fromno {declared}, tono {declared});"
                    "insert into arc2 select * from arc; drop table arc;"
                    "alter table arc2 rename to arc;"
                )
            connection.execute(
                f"update arc set {column} = {value} where rowid = (select min(rowid) from arc)"
            )
        connection.close()

    return make


@pytest.mark.parametrize(
    ("column", "value", "declared"),
    [
        ("fromno", "'one'", "integer"),
        ("fromno", "1.5", "integer"),
        ("fromno", "null", "integer"),
        ("fromno", "x'01'", "integer"),
        ("fromno", str(2**30), "integer"),
        ("fromno", str(-(2**30) - 1), "integer"),
        ("fromno", str(2**62), "integer"),
        ("tono", str(-(2**31)), "integer"),
        # A file that declares its line numbers as text: numeric-looking text is
        # still text, and SQLite would otherwise read a number from its start.
        ("fromno", "'-9abc'", "text"),
        ("fromno", "'0x10'", "text"),
        ("fromno", "1e300", "text"),
        ("tono", "'-3000000000'", "text"),
        ("fromno", "'5'", "text"),
        ("tono", "1e300", ""),
    ],
    ids=[
        "text",
        "real",
        "null",
        "blob",
        "too-big",
        "too-small",
        "huge",
        "end-too-small",
        "text-column-prefix",
        "text-column-hex",
        "text-column-infinity",
        "text-column-out-of-range",
        "text-column-number",
        "untyped-column-infinity",
    ],
)
def test_an_arc_that_is_not_two_line_numbers_is_refused(
    tmp_path: Path, column: str, value: str, declared: str
) -> None:
    path = tmp_path / "bad.coverage"
    _bad_arc(column, value, declared=declared)(path)
    # An integer out of range is named; anything else is not a line number at all.
    reason = (
        f"^implausible: line {value}$"
        if value.lstrip("-").isdigit() and declared == "integer"
        else "not a pair of line numbers"
    )
    with pytest.raises(InvalidDataFileError, match=reason):
        read_data_file(path)


def test_two_file_ids_for_one_path_keep_both_ids_arcs(tmp_path: Path) -> None:
    # coverage.py's file table has unique paths; a file without that constraint
    # must not lose one id's data to the other's.
    path = write_data(
        tmp_path / "twice.coverage",
        {"/var/task/a.py": [(-1, 1), (1, -1)], "/var/task/b.py": [(-1, 5), (5, -1)]},
        branch=True,
    )
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "create table file2 (id integer primary key, path text);"
            "insert into file2 select * from file; drop table file;"
            "alter table file2 rename to file;"
            "update file set path = '/var/task/a.py';"
        )
    connection.close()
    merger = Merger()
    merger.add(read_data_file(path))
    assert merger.result().arcs == {
        ("/var/task/a.py", ""): frozenset({(-1, 1), (1, -1), (-1, 5), (5, -1)})
    }


def test_arcs_at_the_edges_of_the_line_range_are_read(tmp_path: Path) -> None:
    top = datafiles.MAX_LINE
    edges = [(-top, top), (top, -top), (-1, 0)]
    path = write_data(tmp_path / "edge.coverage", {"/var/task/app.py": edges}, branch=True)
    merger = Merger()
    merger.add(read_data_file(path))
    assert merger.result().arcs[("/var/task/app.py", "")] == frozenset(edges)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty object"),
        (lambda p: p.write_bytes(b"not sqlite at all"), "not SQLite"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200), "corrupt"),
        (_sqlite_without_coverage, "no coverage_schema"),
        (_truncated, "truncated"),
        (_bad_numbits, "not a numbits blob"),
        (_dangling_file_id, "missing file"),
        (_old_schema, "unreadable by coverage.py"),
    ],
    ids=[
        "empty",
        "text",
        "garbage-sqlite",
        "other-sqlite",
        "truncated",
        "bad-numbits",
        "dangling",
        "old-schema",
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.coverage"
    make(path)
    with pytest.raises(InvalidDataFileError, match=reason):
        read_data_file(path)


def test_a_bad_file_does_not_disturb_the_reading_of_the_next(tmp_path: Path) -> None:
    # Files are read through one SQLite connection per thread: whatever a bad file
    # did to it, the next file is read as if it were the first.
    good = write_data(tmp_path / "good.coverage", {"/var/task/app.py": [1, 3]})
    first = read_data_file(good)
    makers = [_truncated, _bad_numbits, _dangling_file_id, _sqlite_without_coverage]
    for number, make in enumerate(makers):
        bad = tmp_path / f"bad-{number}.coverage"
        make(bad)
        with pytest.raises(InvalidDataFileError):
            read_data_file(bad)
        assert read_data_file(good) == first


def test_a_bad_file_is_skipped_and_the_rest_combined(tmp_path: Path) -> None:
    good = write_data(tmp_path / "fn-1.coverage", {"/var/task/app.py": [1, 3]})
    bad = tmp_path / "fn-2.coverage"
    bad.write_bytes(b"\x00" * 10)
    combined, skipped = merge_local([good, bad])
    assert [item.key for item in skipped] == [str(bad)]
    assert combined.executed_lines("/var/task/app.py") == {1, 3}


def test_too_many_paths_in_one_object_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datafiles, "MAX_FILES_PER_OBJECT", 10)
    path = write_data(tmp_path / "x.coverage", {f"/var/task/{n}.py": [1] for n in range(11)})
    with pytest.raises(InvalidDataFileError, match="implausible"):
        read_data_file(path)


def test_write_is_atomic_and_readable_by_coverage(tmp_path: Path) -> None:
    combined, _ = merge_local([write_data(tmp_path / "f-1.coverage", {"/var/task/a.py": [2]})])
    target = tmp_path / "out" / "combined.coverage"
    combined.write(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["combined.coverage"]
    data = coverage.CoverageData(basename=str(target))
    data.read()
    assert data.lines("/var/task/a.py") == [2]


@pytest.mark.parametrize(
    ("key", "function"),
    [
        ("coverage/2024/01/15/orders-api-0123456789abcdef0123456789abcdef.coverage", "orders-api"),
        ("p/2024/01/15/my-fn-1b4e28ba-2fa1-11d2-883f-0016d3cca427.coverage", "my-fn"),
        ("p/2024/01/15/fn-0.coverage", "fn"),
        ("plain.coverage", "plain"),
    ],
)
def test_function_from_key(key: str, function: str) -> None:
    assert function_from_key(key) == function


def test_numbits_helpers_agree_with_coverage() -> None:
    from coverage.numbits import nums_to_numbits

    nums = [1, 7, 8, 63, 64, 65, 1000]
    bits = int.from_bytes(nums_to_numbits(nums), "little")
    assert datafiles.bits_to_lines(bits) == nums


def test_a_data_file_with_its_defaults_survives_pickle_and_copy() -> None:
    import copy
    import pickle

    from coverage_wrapper.datafiles import DataFile

    data = DataFile("lines", {("a.py", ""): 6})
    assert pickle.loads(pickle.dumps(data)) == data
    assert copy.deepcopy(data) == data
    assert data.arcs == {} and len(data.tracers) == 0
