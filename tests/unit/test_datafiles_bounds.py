"""Hostile data files: each is refused with a reason, or read exactly, within bounds.

Every case runs the whole pipeline (read, merge, result, write, executed lines per
file and per context) in a child process with a cap on its address space and a
wall-clock limit, so a hang or a memory blow-up fails the test instead of the run.
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import coverage
import pytest

from tests.support.combine_data import write_data

# The engine's bounds, as the documentation states them.
LINE_BOUND = 2**22
CONTEXT_BOUND = 100_000
# Generous limits for a child: a hang or a blow-up exceeds them by far.
MEMORY_CAP = 1024 * 1024 * 1024
WALL_CLOCK = 60.0
RSS_BOUND_MB = 400

PIPELINE = r"""
import json, sys
from pathlib import Path
from coverage_wrapper import datafiles as engine
mode, output, *paths = sys.argv[1:]
if mode == "fallback":  # every file read through coverage.py's API
    engine.KNOWN_SCHEMA_VERSION = -1
merger = engine.Merger()
refused = {}
for name in paths:
    try:
        merger.add(engine.read_data_file(Path(name)))
    except engine.InvalidDataFileError as error:
        refused[name] = str(error)
combined = merger.result()
combined.write(Path(output))
for name in combined.measured_files():
    combined.executed_lines(name)
combined.executed_by_context()
# This process's own peak (VmHWM): getrusage's ru_maxrss keeps, across exec, the peak
# of the pytest process that forked it.
status = Path("/proc/self/status").read_text()
rss = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"refused": refused, "rss_mb": rss, "kind": combined.kind}))
"""


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_bounded(code: str, *args: str, timeout: float = WALL_CLOCK) -> dict[str, Any]:
    """Run ``code`` in a child capped in memory and time; its last stdout line, as JSON."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limits,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout:.0f} s")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.get("rss_mb", 0) < RSS_BOUND_MB, result
    result["elapsed"] = elapsed
    return result


def pipeline(tmp_path: Path, *paths: Path, mode: str = "direct") -> dict[str, Any]:
    output = tmp_path / "out" / "combined.coverage"
    result = run_bounded(PIPELINE, mode, str(output), *map(str, paths))
    result["output"] = output
    return result


def per_context(path: Path) -> dict[tuple[str, str], list[Any]]:
    """What coverage.py reads from a data file: lines or arcs per (context, file)."""
    data = coverage.CoverageData(basename=str(path))
    data.read()
    found: dict[tuple[str, str], list[Any]] = {}
    for context in sorted(data.measured_contexts()):
        data.set_query_context(context)
        for name in data.measured_files():
            items = data.arcs(name) if data.has_arcs() else data.lines(name)
            if items:
                found[context, name] = sorted(items)
    data.close()
    return found


def union(*paths: Path) -> dict[tuple[str, str], list[Any]]:
    merged: dict[tuple[str, str], set[Any]] = {}
    for path in paths:
        for key, items in per_context(path).items():
            merged.setdefault(key, set()).update(items)
    return {key: sorted(items) for key, items in merged.items()}


def edit(path: Path, script: str) -> Path:
    with sqlite3.connect(path) as connection:
        connection.executescript(script)
    connection.close()
    return path


def arc_file(path: Path, line: int, *, files: int = 1) -> Path:
    """A branch data file whose arcs reach ``line``, in ``files`` measured files."""
    arcs = [(-1, 1), (1, line), (line, -1)]
    return write_data(path, {f"/var/task/m{n}.py": arcs for n in range(files)}, branch=True)


# An endless recursive query that yields nothing: SQLite spins without returning a row.
ENDLESS = (
    "with recursive r(n) as (select 1 union all select n + 1 from r) "
    "select n as id, '/var/task/x.py' as path from r where n < 0"
)


def test_an_arc_to_line_2_to_the_30_is_refused(tmp_path: Path) -> None:
    path = arc_file(tmp_path / "a.coverage", 2**30 - 1)
    assert path.stat().st_size < 64 * 1024
    result = pipeline(tmp_path, path)
    assert result["refused"] == {str(path): "implausible: line 1073741823"}


@pytest.mark.parametrize("mode", ["direct", "fallback"])
def test_a_file_table_that_is_an_endless_view_is_refused(tmp_path: Path, mode: str) -> None:
    path = write_data(tmp_path / "v.coverage", {"/var/task/app.py": [1, 2]})
    edit(path, f"drop table file; create view file as {ENDLESS};")
    result = pipeline(tmp_path, path, mode=mode)
    assert result["refused"] == {str(path): "not a coverage data file: file is a view"}


@pytest.mark.parametrize("mode", ["direct", "fallback"])
def test_an_arc_beyond_the_line_bound_is_refused_by_both_readers(tmp_path: Path, mode: str) -> None:
    path = arc_file(tmp_path / "a.coverage", LINE_BOUND + 1)
    result = pipeline(tmp_path, path, mode=mode)
    assert result["refused"] == {str(path): f"implausible: line {LINE_BOUND + 1}"}


def test_ctrl_c_ends_a_read_that_spins_inside_sqlite(tmp_path: Path) -> None:
    # The endless view is refused before it runs; whichever comes first, the child
    # must end promptly after SIGINT instead of spinning where Python never looks.
    path = write_data(tmp_path / "v.coverage", {"/var/task/app.py": [1, 2]})
    edit(path, f"drop table file; create view file as {ENDLESS};")
    code = (
        "import sys, time\nfrom pathlib import Path\n"
        "from coverage_wrapper import datafiles as engine\n"
        "print('ready', flush=True)\n"
        "deadline = time.monotonic() + 30\n"
        "while time.monotonic() < deadline:\n"
        "    try:\n"
        "        engine.read_data_file(Path(sys.argv[1]))\n"
        "    except engine.InvalidDataFileError:\n"
        "        pass\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limits,  # noqa: PLW1509 - the child runs no threads before exec
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGINT did not stop the read within 10 s")
    finally:
        child.kill()
        child.wait()
    assert "KeyboardInterrupt" in stderr


GUARDED = r"""
import json, os, signal, sys, threading, time
from coverage_wrapper import datafiles as engine
budget, interrupt_after = float(sys.argv[1]), float(sys.argv[2])
endless = sys.argv[3]
engine.READ_TIME_BUDGET = budget
reader = engine._Reader()
if interrupt_after >= 0:
    threading.Timer(interrupt_after, os.kill, (os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    reader.guarded(lambda connection: connection.execute(endless).fetchall())
except engine.InvalidDataFileError as error:
    outcome = str(error)
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
# The reader is usable afterwards.
after = reader.guarded(lambda connection: connection.execute("select 1").fetchall())
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started,
                  "after": after}))
"""


# A query that takes hours inside SQLite, from no table of any file: a cross join of
# a JSON array of 2,000 numbers with itself, three times (the reader refuses any
# recursive query).
_NUMBERS = "'[" + ",".join(["0"] * 2000) + "]'"
SPIN = "select count(*) from " + ", ".join(f"json_each({_NUMBERS}) {name}" for name in "abc")


def test_the_time_budget_is_enforced_inside_sqlite() -> None:
    result = run_bounded(GUARDED, "0.5", "-1", SPIN, timeout=30)
    assert result["outcome"] == "too expensive: over 0.5 s in SQLite"
    assert result["after"] == [[1]]


def test_ctrl_c_inside_sqlite_is_a_keyboard_interrupt_not_a_time_out() -> None:
    result = run_bounded(GUARDED, "600", "0.5", SPIN, timeout=30)
    assert result["outcome"] == "KeyboardInterrupt"
    assert result["after"] == [[1]]


def test_large_sparse_numbits_are_read_exactly_in_linear_time(tmp_path: Path) -> None:
    # Eight files whose line numbers reach the bound: 512 KB of numbits each.
    lines = [*range(1, LINE_BOUND, 4099), LINE_BOUND]
    path = write_data(tmp_path / "n.coverage", {f"/var/task/m{n}.py": lines for n in range(8)})
    result = pipeline(tmp_path, path)
    assert result["refused"] == {}
    assert union(result["output"]) == union(path)


def test_a_numbits_blob_beyond_the_line_bound_is_refused(tmp_path: Path) -> None:
    path = write_data(tmp_path / "n.coverage", {"/var/task/app.py": [1]})
    top = 64 * 2**20  # an 8 MB blob
    blob = (1 << top | 2).to_bytes(top // 8 + 1, "little")
    with sqlite3.connect(path) as connection:
        connection.execute("update line_bits set numbits = ?", (blob,))
    connection.close()
    result = pipeline(tmp_path, path)
    assert result["refused"] == {str(path): f"implausible: line {top}"}


def _contexts_file(path: Path, count: int, files: int = 1) -> Path:
    write_data(path, {f"/var/task/m{n}.py": [1] for n in range(files)})
    edit(path, "delete from line_bits; delete from context;")
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "insert into context (id, context) values (?, ?)",
            ((n + 1, f"request-{n}") for n in range(count)),
        )
        connection.execute(
            "insert into line_bits (file_id, context_id, numbits) "
            "select file.id, context.id, x'06' from file, context"
        )
    connection.close()
    return path


def test_twenty_thousand_contexts_are_read_and_written_exactly(tmp_path: Path) -> None:
    path = _contexts_file(tmp_path / "c.coverage", 20_000)
    assert path.stat().st_size < 2 * 2**20
    result = pipeline(tmp_path, path)
    assert result["refused"] == {}
    assert union(result["output"]) == union(path)


def test_a_fleet_of_contexts_and_files_is_written_exactly(tmp_path: Path) -> None:
    # 400 functions x 200 files, as a combined data file for a real fleet holds.
    inputs = [
        write_data(
            tmp_path / f"fn-{n}.coverage",
            {f"/var/task/m{m}.py": [1, n % 7 + 2] for m in range(200)},
        )
        for n in range(2)
    ]
    path = _contexts_file(tmp_path / "fleet.coverage", 400, files=200)
    result = pipeline(tmp_path, path, *inputs)
    assert result["refused"] == {}
    assert union(result["output"]) == union(path, *inputs)


def test_too_many_contexts_in_one_object_are_refused(tmp_path: Path) -> None:
    path = _contexts_file(tmp_path / "c.coverage", CONTEXT_BOUND + 1)
    result = pipeline(tmp_path, path)
    assert result["refused"] == {str(path): f"implausible: {CONTEXT_BOUND + 1} contexts"}


def test_arcs_to_high_lines_in_many_files_do_not_exhaust_memory(tmp_path: Path) -> None:
    # Mixed with line data, every arc file's lines become numbits: 2**29 bits each
    # before the line bound.
    lines = write_data(tmp_path / "l.coverage", {"/var/task/app.py": [1, 2]})
    arcs = [arc_file(tmp_path / f"a{n}.coverage", 2**29 + n, files=1) for n in range(10)]
    result = pipeline(tmp_path, lines, *arcs)
    assert result["refused"] == {
        str(p): f"implausible: line {2**29 + n}" for n, p in enumerate(arcs)
    }


def test_arcs_at_the_line_bound_are_read_exactly(tmp_path: Path) -> None:
    arcs = [arc_file(tmp_path / f"a{n}.coverage", LINE_BOUND - n) for n in range(10)]
    result = pipeline(tmp_path, *arcs)
    assert result["refused"] == {}
    assert result["kind"] == "arcs"
    assert union(result["output"]) == union(*arcs)


def test_many_measured_files_reaching_the_line_bound_in_one_object_are_refused(
    tmp_path: Path,
) -> None:
    # 2,000 measured files whose arcs reach the bound: a small object whose lines
    # would take 2,000 x 512 KB as numbits where it is written as line data.
    path = arc_file(tmp_path / "a.coverage", LINE_BOUND, files=2000)
    lines = write_data(tmp_path / "l.coverage", {"/var/task/app.py": [1, 2]})
    result = pipeline(tmp_path, path, lines)
    assert list(result["refused"]) == [str(path)]
    assert result["refused"][str(path)].startswith("too large: ")


def test_dense_line_data_beyond_the_line_count_bound_is_refused(tmp_path: Path) -> None:
    # Two files with every line up to the line bound: 1 MB of numbits, 8 million
    # lines, which reports would list one Python int each.
    everything = (1 << (LINE_BOUND + 1)) - 2  # lines 1 .. LINE_BOUND
    path = write_data(tmp_path / "d.coverage", {"/var/task/a.py": [1], "/var/task/b.py": [1]})
    with sqlite3.connect(path) as connection:
        connection.execute(
            "update line_bits set numbits = ?",
            (everything.to_bytes(LINE_BOUND // 8 + 1, "little"),),
        )
    connection.close()
    result = pipeline(tmp_path, path)
    assert result["refused"] == {
        str(
            path
        ): f"too large: {2 * LINE_BOUND} executed lines in one object (at most {LINE_BOUND})"
    }


def test_the_bounds_are_the_documented_ones() -> None:
    from coverage_wrapper import datafiles

    assert datafiles.MAX_LINE == LINE_BOUND
    assert datafiles.MAX_CONTEXTS_PER_OBJECT == CONTEXT_BOUND


def test_a_generated_column_that_makes_a_small_file_read_as_gigabytes_is_refused(
    tmp_path: Path,
) -> None:
    # 40 rows whose numbits a generated column makes 60 MB each: a 50 KB file that
    # would read as 2.4 GB. Plain tables hold no more than the file does.
    path = write_data(tmp_path / "g.coverage", {f"/var/task/m{n}.py": [1] for n in range(40)})
    edit(
        path,
        "drop table line_bits; "
        "create table line_bits (file_id integer, context_id integer, "
        "numbits blob as (zeroblob(60000000)) virtual, unique (file_id, context_id)); "
        "insert into line_bits (file_id, context_id) select file.id, context.id "
        "from file, context;",
    )
    assert path.stat().st_size < 128 * 1024
    result = pipeline(tmp_path, path)
    assert list(result["refused"]) == [str(path)]
    reason = result["refused"][str(path)]
    if sys.version_info >= (3, 12):  # read, and stopped by the read limit
        assert reason.startswith("too large: it reads as more than "), reason
    else:  # its tables are looked at before the read (SQLite can't refuse views there)
        assert reason == "not a coverage data file: line_bits is not a plain table"


def test_a_key_whose_function_name_is_not_one_is_refused() -> None:
    from coverage_wrapper.datafiles import InvalidDataFileError, function_of

    assert function_of("coverage/2024/01/15/orders-api-" + "a" * 32 + ".coverage") == "orders-api"
    for key in ("p/orders|evil-" + "a" * 32 + ".coverage", "p/x\x1b[2J-" + "b" * 32 + ".coverage"):
        with pytest.raises(InvalidDataFileError, match="is not a function name"):
            function_of(key)
