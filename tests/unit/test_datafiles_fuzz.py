"""Fuzzing the reader: valid data files from coverage.py's own API, then broken.

Each example is a data file written by ``coverage.CoverageData`` (lines or arcs,
several contexts, file tracers) and then mutated: its schema (tables dropped,
renamed, turned into views, given triggers, generated columns or other column
types), its values (text, real, blob, null, infinity, huge numbers), its sizes,
duplicate ids. The reader must either give exactly what coverage.py reads from
the file, or refuse it with InvalidDataFileError and a one-line reason, within
its time budget and a bound on the memory Python allocates.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import coverage
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from coverage_wrapper import datafiles
from coverage_wrapper.datafiles import InvalidDataFileError, read_data_file, unpack_arc

BUDGET = 2.0  # seconds: the reader's time budget for these small files
MEMORY_BOUND = 64 * 1024 * 1024  # peak bytes Python allocates for one read

PATHS = ["/var/task/app.py", "/var/task/lib/util.py", "/var/task/handler.py"]
CONTEXTS = ["", "warm", "cold|retry"]
TABLES = ["coverage_schema", "meta", "file", "context", "line_bits", "arc", "tracer"]

VALUES = st.one_of(
    st.sampled_from(
        [
            "'text'",
            "''",
            "'12'",
            "1.5",
            "7.0",
            "null",
            "x''",
            "x'00ff'",
            "9e999",
            "-9e999",
            "2147483648",
            "9223372036854775807",
            "-9223372036854775808",
            "0",
            "-1",
            str(2**22),
            str(2**22 + 1),
            "zeroblob(600000)",
            "randomblob(5000)",
        ]
    ),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
)

# (column to set, table) pairs for value mutations.
TARGETS = [
    ("numbits", "line_bits"),
    ("fromno", "arc"),
    ("tono", "arc"),
    ("file_id", "arc"),
    ("context_id", "line_bits"),
    ("path", "file"),
    ("id", "file"),
    ("context", "context"),
    ("value", "meta"),
    ("version", "coverage_schema"),
    ("tracer", "tracer"),
]


def _recreate(table: str, columns: str, select: str = "*") -> str:
    return (
        f"create table {table}_new ({columns}); "
        f"insert into {table}_new select {select} from {table}; "
        f"drop table {table}; alter table {table}_new rename to {table};"
    )


SCHEMA_MUTATIONS = st.one_of(
    st.sampled_from(TABLES).map(lambda t: f"drop table {t};"),
    st.sampled_from(TABLES).map(lambda t: f"alter table {t} rename to {t}_old;"),
    st.sampled_from(TABLES).map(
        lambda t: f"alter table {t} rename to {t}_t; create view {t} as select * from {t}_t;"
    ),
    st.sampled_from(TABLES).map(
        lambda t: f"create trigger trig_{t} after insert on {t} begin select 1; end;"
    ),
    st.just(_recreate("arc", "file_id text, context_id text, fromno text, tono text")),
    st.just(_recreate("arc", "file_id, context_id, fromno real, tono blob")),
    st.just(_recreate("line_bits", "file_id, context_id, numbits text")),
    st.just(
        _recreate(
            "line_bits",
            "file_id integer, context_id integer, stored blob, numbits blob as (stored)",
            "file_id, context_id, numbits",
        ).replace(
            "insert into line_bits_new select",
            "insert into line_bits_new (file_id, context_id, stored) select",
        )
    ),
    # Duplicate ids: one id for two paths, two ids for one context.
    st.just(
        _recreate("file", "id integer, path text")
        + "insert into file select id, path || '.dup' from file;"
    ),
    st.just(
        _recreate("context", "id integer, context text")
        + "insert into context select id + 100, context from context;"
    ),
    st.just(
        _recreate("context", "id integer, context text")
        + "insert into context select id, context || '-dup' from context;"
    ),
    # Sizes: many rows, a long blob.
    st.just(
        "insert into context (context) select 'c' || value from "
        "(with recursive n(value) as (select 1 union all select value + 1 from n "
        "where value < 2000) select value from n);"
    ),
)


@st.composite
def measurements(draw: st.DrawFn) -> tuple[bool, dict[str, dict[str, list[Any]]], dict[str, str]]:
    branch = draw(st.booleans())
    contexts = draw(st.lists(st.sampled_from(CONTEXTS), min_size=1, max_size=3, unique=True))
    per_context: dict[str, dict[str, list[Any]]] = {}
    for context in contexts:
        files = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True))
        per_file: dict[str, list[Any]] = {}
        for name in files:
            lines = draw(st.lists(st.integers(1, 400), min_size=1, max_size=20, unique=True))
            if branch:
                per_file[name] = [(-1, lines[0]), *itertools.pairwise(lines)]
                per_file[name].append((lines[-1], -1))
            else:
                per_file[name] = lines
        per_context[context] = per_file
    tracers = draw(
        st.dictionaries(st.sampled_from(PATHS), st.sampled_from(["plugin.Tracer"]), max_size=1)
    )
    return branch, per_context, tracers


def _write(
    path: Path, branch: bool, per_context: dict[str, dict[str, list[Any]]], tracers: dict[str, str]
) -> None:
    data = coverage.CoverageData(basename=str(path))
    for context, per_file in per_context.items():
        data.set_context(context)
        if branch:
            data.add_arcs(per_file)
        else:
            data.add_lines(per_file)
    measured = {name for per_file in per_context.values() for name in per_file}
    tracers = {name: tracer for name, tracer in tracers.items() if name in measured}
    if tracers:
        data.add_file_tracers(tracers)
    data.close()


def _as_coverage_reads(path: Path) -> tuple[bool, dict[tuple[str, str], list[Any]]] | None:
    """Lines or arcs per (file, context) as coverage.py reads them; None if it cannot."""
    data = coverage.CoverageData(basename=str(path))
    try:
        data.read()
        found: dict[tuple[str, str], list[Any]] = {}
        for context in data.measured_contexts() or {""}:
            data.set_query_context(context)
            for name in data.measured_files():
                items = data.arcs(name) if data.has_arcs() else data.lines(name)
                if items:
                    found[name, context] = sorted(items)
        return data.has_arcs(), found
    except Exception:
        return None
    finally:
        data.close()


def _as_we_read(found: datafiles.DataFile) -> dict[tuple[str, str], list[Any]]:
    result: dict[tuple[str, str], list[Any]] = {}
    for slot, bits in found.lines.items():
        if bits:
            result[slot] = datafiles.bits_to_lines(bits)
    for slot, packed in found.arcs.items():
        result[slot] = sorted(map(unpack_arc, packed))
    return result


@contextmanager
def _budget(seconds: float) -> Iterator[None]:
    saved = datafiles.READ_TIME_BUDGET
    datafiles.READ_TIME_BUDGET = seconds
    try:
        yield
    finally:
        datafiles.READ_TIME_BUDGET = saved


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    measured=measurements(),
    mutations=st.lists(
        st.one_of(
            SCHEMA_MUTATIONS,
            VALUES.map(lambda value: f"update meta set value = {value} where key = 'has_arcs';"),
            st.tuples(st.sampled_from(TARGETS), VALUES).map(
                lambda pair: (
                    f"update {pair[0][1]} set {pair[0][0]} = {pair[1]} "
                    f"where rowid = (select min(rowid) from {pair[0][1]});"
                )
            ),
        ),
        max_size=3,
    ),
)
def test_every_file_is_read_exactly_or_refused_with_a_reason(
    tmp_path_factory: Any, measured: Any, mutations: list[str]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fn-1.coverage"
    _write(path, *measured)
    with sqlite3.connect(path) as connection:
        for script in mutations:
            # A mutation that does not apply to this file is skipped: the next one may.
            with contextlib.suppress(sqlite3.Error):
                connection.executescript(script)
    connection.close()

    tracemalloc.start()
    started = time.monotonic()
    try:
        with _budget(BUDGET):
            found = read_data_file(path)
    except InvalidDataFileError as error:
        reason = str(error)
        assert reason and "\n" not in reason
        event(f"refused: {reason.split(':', maxsplit=1)[0]}")
        found = None
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < BUDGET + 5, mutations  # the budget, plus Python's share (a hang bound)
    assert peak < MEMORY_BOUND, mutations
    if found is None:
        return
    expected = _as_coverage_reads(path)
    assert expected is not None, ("read a file coverage.py cannot read", mutations)
    has_arcs, per_slot = expected
    event("read exactly" if per_slot else "read: no data")
    assert _as_we_read(found) == per_slot, mutations
    if per_slot:
        assert found.kind == ("arcs" if has_arcs else "lines"), mutations
