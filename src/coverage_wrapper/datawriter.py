"""Writing coverage.py data files in the runtime: what delivery needs of the format.

The runtime adds each invocation's lines (or arcs) to its environment's data
file with SQLite directly, in coverage.py's schema, without coverage.py's
reporting code or lambdacov's combine engine (:mod:`coverage_wrapper.datafiles`,
which reads and merges many files and imports this module for the format they
share). Only this module and ``sqlite3`` are imported for it, at init or with the
first delivery.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

Kind = Literal["lines", "arcs"]

#: The version of coverage.py's SQLite schema written here, and the one the combine
#: engine's direct reader was checked against (coverage 7.x).
KNOWN_SCHEMA_VERSION = 7


class InvalidDataFileError(Exception):
    """A file that is not a readable coverage.py data file; the message says why."""


def lines_to_bits(lines: Iterable[int]) -> int:
    """A numbits integer from non-negative line numbers, in time linear in both."""
    numbers = list(lines)
    if not numbers:
        return 0
    buffer = bytearray(max(numbers) // 8 + 1)
    for number in numbers:
        buffer[number >> 3] |= 1 << (number & 7)
    return int.from_bytes(buffer, "little")


def numbits(bits: int) -> bytes:
    """A numbits integer as coverage.py stores it: little-endian bytes, as few as hold it."""
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def add_to_data_file(path: Path, kind: Kind, measured: Mapping[str, Iterable[Any]]) -> None:
    """Add lines (or arcs) to the data file at ``path``, made when there is none, in place.

    What coverage.py's ``CoverageData.add_lines``/``add_arcs`` do, with SQLite
    directly, in one transaction: the layer's delivery runs without coverage.py.
    In place rather than a new copy renamed (a nearly full ``/tmp`` has room for a
    transaction's journal, not for a second copy), with the rollback journal on
    disk: a process killed mid-write (a timeout, an out-of-memory kill) leaves a
    journal that the next open rolls back, never a half-written file. A file
    damaged some other way fails SQLite's quick check here, before anything is
    added to it. An ``sqlite3.DatabaseError`` (or InvalidDataFileError for a
    file of the other kind) leaves it to the caller to tell a damaged file
    from a full disk.
    """
    arcs = kind == "arcs"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("begin immediate")
        try:
            _check_intact(connection)
            if not connection.execute("select 1 from sqlite_master limit 1").fetchone():
                for statement in SCHEMA.split(";"):
                    connection.execute(statement)
                start_data_file(connection, arcs)
            _check_kind(connection, kind)
            _add_measured(connection, arcs, measured)
            connection.execute("commit")
        except BaseException:
            if connection.in_transaction:
                connection.execute("rollback")
            raise


def _check_intact(connection: sqlite3.Connection) -> None:
    """DatabaseError unless SQLite's quick check finds the file whole (about 1 ms here)."""
    (verdict,) = connection.execute("pragma quick_check(1)").fetchone()
    if verdict != "ok":
        raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")


def _check_kind(connection: sqlite3.Connection, kind: Kind) -> None:
    """Refuse to add ``kind`` data to a file of the other kind, as coverage.py does."""
    row = connection.execute("select value from meta where key = 'has_arcs'").fetchone()
    if row is not None and row[0] != ("1" if kind == "arcs" else "0"):
        raise InvalidDataFileError(f"not {kind} data")


def _add_measured(
    connection: sqlite3.Connection, arcs: bool, measured: Mapping[str, Iterable[Any]]
) -> None:
    connection.execute("insert or ignore into context (context) values ('')")
    (context_id,) = connection.execute("select id from context where context = ''").fetchone()
    for name, items in measured.items():
        connection.execute("insert or ignore into file (path) values (?)", (name,))
        (file_id,) = connection.execute("select id from file where path = ?", (name,)).fetchone()
        if arcs:
            connection.executemany(
                "insert or ignore into arc (file_id, context_id, fromno, tono) values (?, ?, ?, ?)",
                ((file_id, context_id, start, end) for start, end in items),
            )
            continue
        found = connection.execute(
            "select numbits from line_bits where file_id = ? and context_id = ?",
            (file_id, context_id),
        ).fetchone()
        bits = lines_to_bits(items) | (int.from_bytes(found[0], "little") if found else 0)
        connection.execute(
            "insert or replace into line_bits (file_id, context_id, numbits) values (?, ?, ?)",
            (file_id, context_id, numbits(bits)),
        )


def start_data_file(connection: sqlite3.Connection, arcs: bool) -> None:
    """The rows a new data file starts with: the schema version and its kind."""
    version = (KNOWN_SCHEMA_VERSION,)
    connection.execute("insert into coverage_schema (version) values (?)", version)
    has_arcs = ("has_arcs", "1" if arcs else "0")
    connection.execute("insert into meta (key, value) values (?, ?)", has_arcs)


# coverage.py's schema, version 7 (coverage/sqldata.py): the tables and constraints its
# reader expects, which the direct reader reads back.
SCHEMA = """
create table coverage_schema (version integer);
create table meta (key text, value text, unique (key));
create table file (id integer primary key, path text, unique (path));
create table context (id integer primary key, context text, unique (context));
create table line_bits (
    file_id integer, context_id integer, numbits blob,
    foreign key (file_id) references file (id),
    foreign key (context_id) references context (id),
    unique (file_id, context_id)
);
create table arc (
    file_id integer, context_id integer, fromno integer, tono integer,
    foreign key (file_id) references file (id),
    foreign key (context_id) references context (id),
    unique (file_id, context_id, fromno, tono)
);
create table tracer (
    file_id integer primary key, tracer text, foreign key (file_id) references file (id)
)
"""
