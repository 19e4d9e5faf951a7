"""The combine engine: many coverage.py data files in, one combined data set out.

Shared by the runtime's ``combine_coverage_files`` (the guide's combiner
Lambda) and ``lambdacov combine``. It ships in the layer, so it imports only
the standard library and coverage.py.

Opening a data file through ``coverage.CoverageData`` costs 3-5 ms, which
caps ``coverage combine`` near 275 files/s. This engine reads coverage.py's
documented SQLite schema directly (well under a millisecond per file) into
in-memory sets, and writes the result once through the public API. The
direct reader is used only for the schema version it was written against;
any other version goes through ``CoverageData``, with the same result.

Line sets are held as Python ints whose bit *n* means "line *n* ran": that is
exactly coverage's numbits encoding read as a little-endian integer, so the
union of two files' lines is one ``|``. SQLite packs each arc into one integer
and joins a file's arcs into one string (see :func:`pack_arc`); the merge keeps
those decimal strings as they come, since hashing a short string costs less
than parsing it, and parses each distinct arc once, at the end. A file's arcs
thus become a set without a Python step per row. Memory is bounded by the
combined data, not by the number of files.

A data file comes from a Lambda function, so it may be hostile. The reader has
hard bounds (see :data:`MAX_LINE` and the constants beside it): it reads only
plain tables, stops SQLite after :data:`READ_TIME_BUDGET` seconds on one file,
and refuses a file whose line numbers, contexts, measured files or numbits are
beyond what any real program produces, so that every later step (merge, write,
reports) is linear in what it was given.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from coverage_wrapper import identity
from coverage_wrapper.datawriter import (
    KNOWN_SCHEMA_VERSION,
    SCHEMA,
    InvalidDataFileError,
    Kind,
    lines_to_bits,
    numbits,
    start_data_file,
)

_T = TypeVar("_T")

Arc = tuple[int, int]
PackedArc = str  # see pack_arc
Slot = tuple[str, str]  # (measured file, context)


class _Nothing(Mapping[Any, Any]):
    """The empty mapping a field nobody filled holds: shared, so it cannot be changed,
    and pickled as a reference to the one instance."""

    def __getitem__(self, key: Any) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"

    def __reduce__(self) -> str:
        return "_NOTHING"


_NOTHING: Mapping[Any, Any] = _Nothing()

#: Where Lambda puts the function's code; a file recorded under another task root
#: (the local emulator's folder) is read as if it had run here.
LAMBDA_TASK_ROOT = "/var/task"
# A measured file's path and the sha256 of the code it held, as one name: each
# version of a file stays apart through the merge ("\0" is in no measured path).
VERSION_MARK = "\x00"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"\d{4}/\d{2}/\d{2}")

SQLITE_MAGIC = b"SQLite format 3\x00"
# Bounds on one object, far beyond any real function: a hostile or broken file is
# refused with a reason instead of exhausting memory or time.
MAX_FILES_PER_OBJECT = 100_000
MAX_CONTEXTS_PER_OBJECT = 100_000
MAX_PATH_LENGTH = 4096
# The highest line number read. Line sets are numbits, whose size follows their
# highest line: 4,194,304 (2**22) is ten times the largest generated modules
# (hundreds of thousands of lines) and costs at most 512 KB per (file, context).
MAX_LINE = 1 << 22
# The numbits one object's line sets may take in all: 32 MB. A line data file's
# numbits are in the file itself; branch data is counted by each (file, context)'s
# highest line, as its lines become numbits where it is written as line data
# (mixed with line data): a small object, an arc to a high line in each of many
# files, would otherwise become gigabytes there.
MAX_LINE_BITS_PER_OBJECT = 1 << 28
# The executed lines one object's line data may hold, counted over its (file,
# context) pairs: 4,194,304 (2**22), forty times a large application's. Reports
# and the data file written list them one Python int each (about 36 bytes), so a
# small object of dense numbits would otherwise take gigabytes there. Branch data
# needs no such bound: its lines are two per arc at most, and the arcs are in the
# object.
MAX_LINES_PER_OBJECT = 1 << 22
# Wall-clock seconds SQLite may spend on one file (attach, checks, the read); a
# real file takes well under a millisecond.
READ_TIME_BUDGET = 5.0
# The longest string or blob SQLite may make while reading (a numbits blob at
# MAX_LINE is 512 KB; a (file, context)'s joined arcs are 20 bytes an arc).
MAX_SQL_VALUE_BYTES = 64 * 1024 * 1024
# The text and blobs a file may read as, beyond twice its size (see _Reader.read).
MIN_READ_LIMIT = 1 << 20
# SQLite virtual-machine steps between two looks at the clock (and at Ctrl-C).
_PROGRESS_STEPS = 2000

# Keys are PREFIX/YYYY/MM/DD/<function>-<id>.coverage; <id> is an environment id
# (32 hex digits) or a request id (a UUID).
_KEY_NAME = re.compile(
    r"^(?P<function>.+?)-(?P<id>[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})"
    r"\.coverage$"
)


class DataFile(NamedTuple):
    """What one coverage data file holds: line numbits or arcs per (file, context).

    A named tuple, not a dataclass: the layer's delivery in the function's runtime reads and
    writes these, and ``dataclasses`` (with ``inspect``, ``ast`` and ``dis``) would be a
    megabyte of its memory.
    """

    kind: Kind | None  # None: the file measured nothing
    lines: Mapping[Slot, int] = _NOTHING
    arcs: Mapping[Slot, frozenset[PackedArc]] = _NOTHING
    tracers: Mapping[str, str] = _NOTHING
    # Where it was recorded: identity.FUNCTION, FUNCTION_VERSION and TASK_ROOT.
    origin: Mapping[str, str] = _NOTHING
    # A combined file's objects per versioned name (an object's own data counts once),
    # and the date of the newest.
    objects: Mapping[str, int] = _NOTHING
    newest: Mapping[str, str] = _NOTHING


def versioned(path: str, digest: str) -> str:
    """The name the merge gives ``path`` as it was when its sha256 was ``digest``."""
    return f"{path}{VERSION_MARK}{digest}"


def split_version(name: str) -> tuple[str, str | None]:
    """A merged name's path, and the sha256 of the code it was recorded on (None: unknown)."""
    path, mark, digest = name.partition(VERSION_MARK)
    return path, digest if mark else None


# Arcs are (from, to) line numbers, negative for entries and exits. Each is
# packed into one integer with 31 bits per side, which SQLite computes in the
# query (64-bit arithmetic), so numbers must lie in [-2**30, 2**30); the reader
# accepts [-MAX_LINE, MAX_LINE] only.
_BIAS = 1 << 30
_LOW = (1 << 31) - 1
# A row whose numbers are not integers in range packs to 'x' instead. The unary
# '+' takes away the columns' declared type, so values are compared as stored,
# whatever a file declares: text and blobs sort after every number and NULL
# compares as unknown, so they fail. A REAL in range passes, but the arithmetic
# keeps it REAL, which SQLite always writes with a '.' (an infinite one cannot be
# in range). A group's text with neither 'x' nor '.' is digits and commas only.
_ARC_IN_RANGE_SQL = (
    f"+fromno >= -{MAX_LINE} and +fromno <= {MAX_LINE} "
    f"and +tono >= -{MAX_LINE} and +tono <= {MAX_LINE}"
)
_PACKED_ARC_SQL = (
    f"case when {_ARC_IN_RANGE_SQL} then (fromno + {_BIAS}) * {1 << 31} + (tono + {_BIAS}) "
    "else 'x' end"
)
# The first arc that is not a pair of line numbers in range, to name it in the refusal.
_BAD_ARC_SQL = (
    "select fromno, tono from data.arc "  # noqa: S608 - constants only
    f"where case when {_ARC_IN_RANGE_SQL} then 0 else 1 end limit 1"
)


def pack_arc(start: int, end: int) -> PackedArc:
    """An arc as the direct reader's SQL writes it: its packed integer, in decimal."""
    return str((start + _BIAS) << 31 | (end + _BIAS))


def unpack_arc(packed: PackedArc) -> Arc:
    """The (from, to) pair of a packed arc."""
    number = int(packed)
    return (number >> 31) - _BIAS, (number & _LOW) - _BIAS


# The date partition and name at the end of an object's key: .../YYYY/MM/DD/<name>.coverage
DAY_KEY = re.compile(r"(\d{4})/(\d{2})/(\d{2})/([^/]+\.coverage)$")


def key_day(key: str) -> str:
    """The ``YYYY/MM/DD`` partition of an object's key; "" for a key outside the layout."""
    match = DAY_KEY.search(key)
    return f"{match[1]}/{match[2]}/{match[3]}" if match else ""


def function_from_key(key: str) -> str:
    """The function name in an object key ``.../<function>-<id>.coverage``."""
    name = key.rsplit("/", 1)[-1]
    match = _KEY_NAME.match(name)
    if match:
        return match["function"]
    stem = name.removesuffix(".coverage")
    return stem.rsplit("-", 1)[0] if "-" in stem else stem


# What a function's name in a key may hold: Lambda's names are letters, digits, '-'
# and '_' (and '.' is allowed for local files named like objects). Anything else, a
# '|' above all, which separates function and context in the combined data, would
# let a key put its lines on another function's row.
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,140}")


def function_of(key: str) -> str:
    """The function name of an object key; InvalidDataFileError unless a plausible one."""
    name = function_from_key(key)
    if not _FUNCTION_NAME.fullmatch(name):
        raise InvalidDataFileError(f"not a function's object: {name!r} is not a function name")
    return name


def function_context(function: str, context: str) -> str:
    """The context a file's ``context`` gets in combined data: its function's name.

    Lambda records no context of its own (""), so each line's contexts in the
    combined data name the functions that ran it. A context the function set
    itself is kept after a ``|``.
    """
    return f"{function}|{context}" if context else function


def _check_header(name: str) -> int:
    """Refuse empty, non-SQLite and truncated files before SQLite sees them; the size."""
    # os.open/fstat/read rather than Path.stat + open: a third of the cost, and this
    # runs once per object.
    try:
        handle = os.open(name, os.O_RDONLY)
        try:
            size = os.fstat(handle).st_size
            header = os.read(handle, 100)
        finally:
            os.close(handle)
    except OSError as error:
        raise InvalidDataFileError(f"unreadable: {error.strerror or error}") from error
    if size == 0:
        raise InvalidDataFileError("empty object")
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        raise InvalidDataFileError("not a coverage data file (not SQLite)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise InvalidDataFileError("corrupt: bad SQLite header")
    pages = int.from_bytes(header[28:32], "big")
    if pages and size < pages * page_size:
        raise InvalidDataFileError(f"truncated: {size} bytes of {pages * page_size}")
    return size


def _readonly_uri(name: str) -> str:
    """A SQLite URI opening ``name`` read-only and immutable (no locks, no journal).

    Built by hand: ``Path.resolve().as_uri()`` costs more than the rest of the
    open. SQLite's URI syntax gives meaning only to ``%``, ``?`` and ``#``.
    """
    absolute = os.path.abspath(name)  # noqa: PTH100 - Path.resolve() stats every component
    quoted = absolute.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file://{quoted}?mode=ro&immutable=1"


def _check_count(count: int) -> None:
    if count > MAX_FILES_PER_OBJECT:
        raise InvalidDataFileError(f"implausible: {count} measured files in one object")


def _check_contexts(count: int) -> None:
    if count > MAX_CONTEXTS_PER_OBJECT:
        raise InvalidDataFileError(f"implausible: {count} contexts")


def _check_top_line(bits: int) -> int:
    """The size of a numbits integer, in bits; InvalidDataFileError beyond MAX_LINE."""
    size = bits.bit_length()
    if size > MAX_LINE + 1:
        raise InvalidDataFileError(f"implausible: line {size - 1}")
    return size


def _check_budget(total: int, lines: int) -> None:
    """Refuse line data whose numbits (``total`` bits) or line count exceed their bounds."""
    if total > MAX_LINE_BITS_PER_OBJECT:
        raise InvalidDataFileError(
            f"too large: the object's line sets take {total // 8} bytes as numbits "
            f"(at most {MAX_LINE_BITS_PER_OBJECT // 8})"
        )
    if lines > MAX_LINES_PER_OBJECT:
        raise InvalidDataFileError(
            f"too large: {lines} executed lines in one object (at most {MAX_LINES_PER_OBJECT})"
        )


def _arc_reason(start: object, end: object) -> str:
    """Why an arc is refused: a line number out of range, or not a number at all."""
    for number in (start, end):
        if type(number) is int and not -MAX_LINE <= number <= MAX_LINE:
            return f"implausible: line {number}"
    return "corrupt: an arc is not a pair of line numbers"


def _check_path(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_PATH_LENGTH or "\x00" in name:
        raise InvalidDataFileError("corrupt: a measured file name is not a plausible path")
    return name


def read_data_file(path: Path) -> DataFile:
    """Read one coverage.py data file; raise InvalidDataFileError with the reason if it is bad."""
    return _reader().read(path)


def _reader() -> _Reader:
    """This thread's reader (made anew in a forked process)."""
    reader: _Reader | None = getattr(_readers, "reader", None)
    if reader is None or reader.pid != os.getpid():
        reader = _readers.reader = _Reader()
    return reader


class _Reader:
    """Reads data files by attaching each in turn to one in-memory SQLite connection.

    A connection of its own per file costs 16 µs more than attaching the file to
    a connection kept open (of about 140 µs in SQLite per file). One per thread,
    and per process: an SQLite connection must not be used across a fork.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._deadline = float("inf")
        self._timed_out = False
        self._connection = self._connect()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(":memory:", uri=True)
        # Ask every _PROGRESS_STEPS steps whether to stop: past the time budget,
        # a hostile file (a recursive view, a huge join) is refused instead of
        # spinning inside SQLite, where Python would never see Ctrl-C either.
        connection.set_progress_handler(self._progress, _PROGRESS_STEPS)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_SQL_VALUE_BYTES)
        if sys.version_info >= (3, 12):
            # A view runs a query of the file's choosing (an endless recursive one,
            # say): SQLite refuses to read any. No Python code runs per table or
            # column while a statement compiles, so no Ctrl-C can be swallowed
            # there, and no look at sqlite_master is needed first (a seventh of a read).
            connection.setconfig(sqlite3.SQLITE_DBCONFIG_ENABLE_VIEW, False)
        return connection

    def _progress(self) -> int:
        # Called by SQLite; a KeyboardInterrupt raised here (Python runs signal
        # handlers at this point) is swallowed by the sqlite3 module, which then
        # stops the statement: guarded() tells the two apart afterwards. This is
        # the only Python code SQLite runs for the reader, and the only place an
        # exception can be swallowed, so a Ctrl-C is never lost.
        if time.monotonic() > self._deadline:
            self._timed_out = True
            return 1
        return 0

    def guarded(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the connection within the time budget.

        A statement stopped by the budget becomes InvalidDataFileError ("too
        expensive"); one stopped by Ctrl-C becomes KeyboardInterrupt again.
        """
        self._timed_out = False
        self._deadline = time.monotonic() + READ_TIME_BUDGET
        try:
            return work(self._connection)
        except sqlite3.DatabaseError as error:
            if self._timed_out:
                raise InvalidDataFileError(
                    f"too expensive: over {READ_TIME_BUDGET:g} s in SQLite"
                ) from error
            if _interrupted(error):  # by a KeyboardInterrupt in the progress handler
                raise KeyboardInterrupt from error
            raise
        finally:
            self._deadline = float("inf")

    def read(self, path: Path) -> DataFile:
        name = os.fspath(path)
        # Plain tables hold at most what is in the file; the text of packed arcs takes
        # about as much room as their rows and index entries.
        limit = 2 * _check_header(name) + MIN_READ_LIMIT
        found = self.guarded(lambda connection: self._attach_and_read(connection, name, limit))
        return _read_with_coverage_api(path) if found is None else found

    def _attach_and_read(
        self, connection: sqlite3.Connection, name: str, limit: int
    ) -> DataFile | None:
        try:
            connection.execute("attach database ? as data", (_readonly_uri(name),))
        except sqlite3.Error as error:
            if _interrupted(error):
                raise
            raise InvalidDataFileError(f"corrupt: {error}") from error
        try:
            if sys.version_info < (3, 12):  # views are refused by SQLite itself
                _check_tables(connection)
            return _read_attached(connection, limit)
        finally:
            self._detach()

    def _detach(self) -> None:
        try:
            self._connection.execute("detach database data")
        except sqlite3.Error:  # left in a state of its own making: start afresh
            self._connection.close()
            self._connection = self._connect()


def _interrupted(error: sqlite3.Error) -> bool:
    """True for the error of a statement stopped by the progress handler."""
    name = getattr(error, "sqlite_errorname", None)
    return name == "SQLITE_INTERRUPT" if name else str(error) == "interrupted"


def _read_attached(connection: sqlite3.Connection, limit: int) -> DataFile | None:
    """The attached file's data; None when it must be read through coverage.py's API."""
    try:
        cursor = connection.execute(_READ_ALL)
        try:
            return _decode(cursor, connection, limit)
        finally:
            cursor.close()
    except sqlite3.Error as error:
        if _interrupted(error):
            raise
        # Not the schema the statement expects: tell a foreign file from
        # another coverage.py schema version (read through the public API).
        _check_tables(connection)
        if _schema_version(connection) != KNOWN_SCHEMA_VERSION:
            _check_for_coverage_api(connection)
            return None
        raise InvalidDataFileError(f"corrupt: {error}") from error


_readers = threading.local()


# The tables coverage.py's schema has, which both readers read.
_TABLES = ("coverage_schema", "meta", "file", "context", "line_bits", "arc", "tracer")
_CHECK_TABLES = (
    "select lower(name), type, rootpage, sql from data.sqlite_master "  # noqa: S608 - constants
    f"where lower(name) in ({', '.join(repr(t) for t in _TABLES)})"
)
# What may follow the word AS in a generated column's definition before its "(":
# blanks and comments.
_BEFORE_PAREN = re.compile(r"(?:\s|/\*.*?\*/|--[^\n]*\n)*\(", re.DOTALL)


def _check_tables(connection: sqlite3.Connection) -> None:
    """Refuse a file where a table the readers read is a view or not a plain table.

    A view runs a query of the file's choosing (an endless recursive one, say)
    each time it is read, a virtual table (no root page) a module's code, and a
    generated column an expression; this is checked before any statement reads
    one. Coverage's schema has none of them. Run before a file goes to coverage.py's
    own reader, and before the direct reader where SQLite cannot refuse views
    itself (Python 3.11's sqlite3 has no ``setconfig``).
    """
    for name, kind, root, sql in connection.execute(_CHECK_TABLES):
        _check_table(name, kind, root, sql)


def _check_table(name: object, kind: object, root: object, sql: object) -> None:
    """Refuse one sqlite_master entry of a table the readers read, unless a plain table."""
    if kind != "table":
        article = "an" if str(kind)[:1] in "aeiou" else "a"
        raise InvalidDataFileError(f"not a coverage data file: {name} is {article} {kind}")
    if not root or not isinstance(sql, str):
        raise InvalidDataFileError(f"not a coverage data file: {name} is not a plain table")
    if sql not in _PLAIN_TABLE_SQL:
        if _has_generated_column(sql):
            raise InvalidDataFileError(f"not a coverage data file: {name} is not a plain table")
        if len(_PLAIN_TABLE_SQL) < 1000:  # every file repeats coverage's few statements
            _PLAIN_TABLE_SQL.add(sql)


# CREATE TABLE statements checked already and found plain.
_PLAIN_TABLE_SQL: set[str] = set()


def _has_generated_column(sql: str) -> bool:
    """True if a CREATE TABLE statement has a column ``... AS (expression)``.

    A scan for the word AS rather than one regular expression over the whole
    statement: this runs for every file, and the expression costs 20 times more.
    """
    text = sql.lower()
    start = text.find("as")
    while start >= 0:
        before = text[start - 1] if start else " "
        if not (before.isalnum() or before == "_") and _BEFORE_PAREN.match(text, start + 2):
            return True
        start = text.find("as", start + 2)
    return False


def _check_for_coverage_api(connection: sqlite3.Connection) -> None:
    """Apply the reader's bounds to a file before coverage.py's API reads it.

    That API reads through a connection of its own, without the time budget;
    the tables are plain (checked already), so what it costs follows their size,
    which these checks bound: counts, numbits sizes and arcs, each one query.
    """
    for table, check in (("file", _check_count), ("context", _check_contexts)):
        try:
            (count,) = connection.execute(f"select count(*) from data.{table}").fetchone()  # noqa: S608
        except sqlite3.OperationalError as error:
            if _interrupted(error):
                raise
            continue  # no such table: coverage.py says what is wrong
        check(count)
    try:
        row = connection.execute(
            "select numbits from data.line_bits order by length(numbits) desc limit 1"
        ).fetchone()
        if row is not None and isinstance(row[0], bytes):
            _check_top_line(int.from_bytes(row[0], "little"))
        row = connection.execute(_BAD_ARC_SQL).fetchone()
    except sqlite3.OperationalError as error:
        if _interrupted(error):
            raise
        return
    if row is not None:
        raise InvalidDataFileError(_arc_reason(*row))


def _schema_version(connection: sqlite3.Connection) -> int | None:
    """coverage.py's schema version of an attached file; InvalidDataFileError if it has none."""
    try:
        row = connection.execute("select version from data.coverage_schema").fetchone()
    except sqlite3.Error as error:
        if _interrupted(error):
            raise
        raise InvalidDataFileError("not a coverage data file (no coverage_schema)") from error
    if row is None:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidDataFileError("corrupt: the schema version is not a number") from error


# A whole file in one statement, each row tagged with its table. Per file, SQLite's
# cost is opening it, parsing its schema and compiling statements: one statement
# instead of three is a quarter of the read. Arcs come one row per (file, context),
# packed and joined by SQLite, so Python splits a string instead of stepping rows;
# with each group's highest "to" line, for the bound on the numbits its lines take.
_VERSION, _FILE, _CONTEXT, _META, _TRACER, _LINE_BITS, _ARCS = range(7)  # the tags below
_READ_ALL = (
    "select 0, version, null, null, null from data.coverage_schema "  # noqa: S608 - constants
    "union all select 1, id, path, null, null from data.file "
    "union all select 2, id, context, null, null from data.context "
    "union all select 3, key, value, null, null from data.meta "
    "union all select 4, file_id, tracer, null, null from data.tracer "
    "union all select 5, file_id, context_id, numbits, null from data.line_bits "
    f"union all select 6, file_id, context_id, group_concat({_PACKED_ARC_SQL}), "
    "max(+tono) from data.arc group by file_id, context_id"
)
_Row = tuple[Any, Any, Any, Any, Any]


class _Rows:
    """:data:`_READ_ALL`'s rows sorted by table; line and arc rows are resolved last."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.files: dict[Any, Any] = {}
        self.contexts: dict[Any, Any] = {}
        self.meta: dict[Any, Any] = {}
        self.tracers: list[tuple[Any, Any]] = []
        self.data: list[_Row] = []

    @classmethod
    def sort(cls, rows: Iterable[_Row], limit: int) -> _Rows:
        """The rows by table; InvalidDataFileError once their text and blobs pass ``limit``
        bytes (what plain tables hold is in the file: more is computed, by a generated
        column or a virtual table, and a small file could so take gigabytes)."""
        found = cls()
        held = 0
        for row in rows:
            table, key, value, data, _ = row
            # Names (paths, contexts, meta) are in the third column, numbits and
            # joined arcs in the fourth.
            if value.__class__ is str or value.__class__ is bytes:
                held += len(value)
            if data.__class__ is str or data.__class__ is bytes:
                held += len(data)
            if held > limit:
                raise InvalidDataFileError(
                    f"too large: it reads as more than {limit} bytes of data"
                )
            if table >= _LINE_BITS:
                found.data.append(row)
            elif table == _FILE:
                # One id for two paths: coverage.py would give both the id's data.
                if found.files.setdefault(key, value) is not value:
                    raise InvalidDataFileError("corrupt: two measured files with one id")
            elif table == _CONTEXT:
                if found.contexts.setdefault(key, value) is not value:
                    raise InvalidDataFileError("corrupt: two contexts with one id")
            elif table == _META:
                found.meta[key] = value
            elif table == _TRACER:
                found.tracers.append((key, value))
            else:
                found.version = key
        return found

    def slot(self, file_id: Any, context_id: Any) -> Slot:
        try:
            return self.files[file_id], str(self.contexts[context_id] or "")
        except KeyError as error:
            raise InvalidDataFileError(
                "corrupt: a row refers to a missing file or context"
            ) from error


def _decode(rows: Iterable[_Row], connection: sqlite3.Connection, limit: int) -> DataFile | None:
    """A DataFile from :data:`_READ_ALL`'s rows; None for another schema version."""
    found = _Rows.sort(rows, limit)
    if found.version != KNOWN_SCHEMA_VERSION:
        return None
    _check_count(len(found.files))
    _check_contexts(len(found.contexts))
    for name in found.files.values():
        _check_path(name)
    identified = _IdentityRows.read(found.meta)
    found.files = identified.rename(found.files)
    # A file says which kind it holds (meta has_arcs); the other table is ignored,
    # as coverage.py does, which reads the value as bool(int(value)).
    has_arcs = found.meta.get("has_arcs")
    if "has_arcs" in found.meta:
        try:
            has_arcs = "1" if int(found.meta["has_arcs"]) else "0"
        except (TypeError, ValueError, OverflowError) as error:
            raise InvalidDataFileError("corrupt: has_arcs is not a number") from error
    lines = _decode_lines(found) if has_arcs != "1" else {}
    arcs = _decode_arcs(found, connection) if has_arcs != "0" else {}
    if lines and arcs:
        raise InvalidDataFileError("corrupt: both line and arc data in one file")
    kind: Kind | None = None
    if arcs or has_arcs == "1":
        kind = "arcs"
    elif lines or has_arcs == "0":
        kind = "lines"
    tracers = {
        found.files[file_id]: str(tracer)
        for file_id, tracer in found.tracers
        if tracer and file_id in found.files
    }
    return DataFile(
        kind, lines, arcs, tracers, identified.origin, identified.objects, identified.newest
    )


class _IdentityRows:
    """The ``lambdacov:`` rows of a file's ``meta`` table, checked (see
    :mod:`coverage_wrapper.identity`)."""

    def __init__(self) -> None:
        self.origin: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.paths: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.dates: dict[str, str] = {}
        # By the names the merge keeps (see rename).
        self.objects: dict[str, int] = {}
        self.newest: dict[str, str] = {}

    def rename(self, files: dict[Any, Any]) -> dict[Any, Any]:
        """The measured names as the merge keeps them.

        A name becomes its path (a combined file stores two versions of one
        path under two names) joined with the sha256 of its code, when the
        file recorded one.
        """
        if not self.digests and not self.paths:
            return files
        renamed = {}
        for file_id, name in files.items():
            path = self.paths.get(name, name)
            digest = self.digests.get(name)
            renamed[file_id] = versioned(path, digest) if digest else path
            if digest and name in self.counts:
                self.objects[renamed[file_id]] = self.counts[name]
            if digest and name in self.dates:
                self.newest[renamed[file_id]] = self.dates[name]
        return renamed

    @classmethod
    def read(cls, meta: Mapping[Any, Any]) -> _IdentityRows:
        rows = cls()
        for key, value in meta.items():
            if key.__class__ is str and key.startswith(identity.PREFIX):
                if value.__class__ is not str or len(value) > MAX_PATH_LENGTH:
                    raise InvalidDataFileError(f"corrupt: {key[:100]!r} is not a plausible value")
                rows.add(key, value)
        return rows

    def add(self, key: str, value: str) -> None:
        if key.startswith(identity.SHA256):
            if not _DIGEST.fullmatch(value):
                raise InvalidDataFileError("corrupt: a code identity is not a sha256 digest")
            self.digests[key.removeprefix(identity.SHA256)] = value
        elif key.startswith(identity.PATH):
            self.paths[key.removeprefix(identity.PATH)] = _check_path(value)
        elif key.startswith(identity.OBJECTS):
            if not value.isdigit() or len(value) > 9:
                raise InvalidDataFileError("corrupt: an object count is not a number")
            self.counts[key.removeprefix(identity.OBJECTS)] = int(value)
        elif key.startswith(identity.NEWEST):
            if not _DATE.fullmatch(value):
                raise InvalidDataFileError("corrupt: a newest date is not YYYY/MM/DD")
            self.dates[key.removeprefix(identity.NEWEST)] = value
        elif key in _ORIGIN_KEYS:
            self.origin[key] = value


_ORIGIN_KEYS = frozenset(
    {identity.FUNCTION, identity.FUNCTION_VERSION, identity.TASK_ROOT, identity.STARTED}
)


def _decode_lines(found: _Rows) -> dict[Slot, int]:
    lines: dict[Slot, int] = {}
    # Rows for a slot seen already (two ids for one path or one context name):
    # united once at the end, so many of them cost what they hold, not more.
    more: dict[Slot, list[int]] = {}
    total = count = 0  # the numbits all line sets take, in bits; the lines they hold
    for table, file_id, context_id, value, _ in found.data:
        if table == _LINE_BITS:
            if not isinstance(value, bytes):
                raise InvalidDataFileError("corrupt: line data is not a numbits blob")
            slot = found.slot(file_id, context_id)
            bits = int.from_bytes(value, "little")
            total += _check_top_line(bits)
            count += bits.bit_count()
            if slot in lines:
                more.setdefault(slot, []).append(bits)
            else:
                lines[slot] = bits
    _check_budget(total, count)
    for slot, values in more.items():
        lines[slot] = _union_bits([lines[slot], *values])
    return lines


def _decode_arcs(found: _Rows, connection: sqlite3.Connection) -> dict[Slot, frozenset[PackedArc]]:
    arcs: dict[Slot, frozenset[PackedArc]] = {}
    more: dict[Slot, list[frozenset[PackedArc]]] = {}
    total = 0  # the numbits the arcs' lines take where they become line data, in bits
    for table, file_id, context_id, value, top_to in found.data:
        if table == _ARCS:
            if not isinstance(value, str) or "x" in value or "." in value:
                row = connection.execute(_BAD_ARC_SQL).fetchone()
                reason = (
                    _arc_reason(*row) if row else "corrupt: an arc is not a pair of line numbers"
                )
                raise InvalidDataFileError(reason)
            slot = found.slot(file_id, context_id)
            parts = value.split(",")
            # The highest line: SQLite gives the highest "to"; the highest "from" is
            # that of the largest packed arc, and in range every packed arc has 19
            # digits, so the largest string is the largest number.
            top = max(top_to, (int(max(parts)) >> 31) - _BIAS)
            total += top + 1 if top > 0 else 0
            packed = frozenset(parts)
            if slot in arcs:
                more.setdefault(slot, []).append(packed)
            else:
                arcs[slot] = packed
    _check_budget(total, 0)
    for slot, sets in more.items():
        arcs[slot] = frozenset().union(arcs[slot], *sets)
    return arcs


def _union_bits(values: list[int]) -> int:
    """The union of numbits integers, smallest first: each ``|`` costs its larger side,
    so this costs what the values hold, however many small ones join a large one."""
    values.sort(key=int.bit_length)
    bits = 0
    for value in values:
        bits |= value
    return bits


def _packed(arcs: Iterable[Arc]) -> tuple[frozenset[PackedArc], int]:
    """Arcs packed as the direct reader packs them, and their highest line (0 if none)."""
    found = list(arcs)
    top = 0
    for arc in found:
        for number in arc:
            if type(number) is not int or not -MAX_LINE <= number <= MAX_LINE:
                raise InvalidDataFileError(_arc_reason(*arc))
            top = max(top, number)
    return frozenset(pack_arc(start, end) for start, end in found), top


def _read_with_coverage_api(path: Path) -> DataFile:
    """Read a file of another schema version through coverage.py's public API.

    The direct reader has checked the file first (plain tables, counts, numbits
    sizes and arcs in range); the same bounds apply to what coverage.py returns,
    and the time budget is checked between its queries.
    """
    import coverage

    data = coverage.CoverageData(basename=str(path))
    try:
        return _through_api(data, time.monotonic() + READ_TIME_BUDGET)
    except InvalidDataFileError:
        raise
    except Exception as error:  # coverage's DataError, sqlite errors: all mean "unusable"
        raise InvalidDataFileError(f"unreadable by coverage.py: {error}") from error
    finally:
        data.close()


def _through_api(data: Any, deadline: float) -> DataFile:
    data.read()
    measured = sorted(data.measured_files())
    _check_count(len(measured))
    for name in measured:
        _check_path(name)
    contexts = sorted(data.measured_contexts())
    _check_contexts(len(contexts))
    lines: dict[Slot, int] = {}
    arcs: dict[Slot, frozenset[PackedArc]] = {}
    total = count = 0
    for context in contexts or [""]:
        data.set_query_context(context)
        for name in measured:
            if time.monotonic() > deadline:
                raise InvalidDataFileError(
                    f"too expensive: over {READ_TIME_BUDGET:g} s in coverage.py's reader"
                )
            if data.has_arcs():
                if found := data.arcs(name):
                    arcs[name, context], top = _packed(found)
                    total += top + 1 if top > 0 else 0
            elif numbers := data.lines(name):
                lines[name, context] = _checkedlines_to_bits(numbers)
                total += lines[name, context].bit_length()
                count += len(numbers)
        _check_budget(total, count)
    tracers = {name: tracer for name in measured if (tracer := data.file_tracer(name))}
    kind: Kind | None = ("arcs" if data.has_arcs() else "lines") if measured else None
    return DataFile(kind, lines, arcs, tracers)


def _checkedlines_to_bits(numbers: list[int]) -> int:
    for number in numbers:
        if type(number) is not int or not 0 <= number <= MAX_LINE:
            raise InvalidDataFileError(f"implausible: line {number}")
    return lines_to_bits(numbers)


# For each byte value, the positions of its set bits.
_BYTE_BITS = tuple(tuple(n for n in range(8) if value >> n & 1) for value in range(256))
_NONZERO_RUN = re.compile(rb"[^\x00]+")


def bits_to_lines(bits: int) -> list[int]:
    """Line numbers from a numbits integer (bit n set: line n ran), in order.

    Linear in the integer's size: its bytes are scanned once, runs of zero
    bytes by the regular expression engine, set bytes through a table.
    """
    found: list[int] = []
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for run in _NONZERO_RUN.finditer(data):
        base = run.start() * 8
        for byte in run.group():
            found.extend([base + n for n in _BYTE_BITS[byte]])
            base += 8
    return found


def temporary_prefix(target: Path) -> str:
    """The prefix of a temporary file written beside ``target`` and renamed onto it.

    Hidden, and naming the target; the target's name is cut to 200 bytes so the
    temporary name stays within NAME_MAX (255 bytes) however long the target's is.
    """
    return "." + os.fsencode(target.name)[:200].decode(errors="ignore") + "."


def arc_lines(arcs: Iterable[Arc]) -> set[int]:
    """The executed lines of branch data, as coverage.py derives them.

    A set: numbits take room by the highest line, so one arc to a high line
    would cost far more than the arc itself.
    """
    return {number for arc in arcs for number in arc if number > 0}


PathMap = Callable[[str], str | None]  # measured path -> combined path, or None to drop
Labeler = Callable[[str], str]  # a file's context -> the context in the combined data


class Combined:
    """The union of many data files, ready to write or to report on (read-only)."""

    def __init__(
        self,
        kind: Kind | None,
        lines: Mapping[Slot, int],
        arcs: Mapping[Slot, frozenset[Arc]],
        tracers: Mapping[str, str],
        *,
        mixed: bool,
        objects: Mapping[str, int] = _NOTHING,
        newest: Mapping[str, str] = _NOTHING,
    ) -> None:
        self.kind = kind
        self.lines = lines
        # Branch data; with ``mixed``, the arcs of the branch files, whose lines join
        # ``lines`` when the line data is written or reported.
        self.arcs = arcs
        self.tracers = tracers
        self.mixed = mixed  # line and branch files were mixed: combined as line data
        # For each versioned name (see :func:`versioned`), the objects that recorded it
        # and the date of the newest (YYYY/MM/DD, "" if unknown).
        self.objects = objects
        self.newest = newest

    _FIELDS = ("kind", "lines", "arcs", "tracers", "mixed", "objects", "newest")

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._FIELDS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Combined):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # its mappings are not hashable

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._fields().items())
        return f"Combined({shown})"

    def replace(self, **changes: Any) -> Combined:
        """A copy with ``changes`` (keyword arguments named as the constructor's)."""
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"Combined has no field {sorted(unknown)[0]!r}")
        return Combined(**{**self._fields(), **changes})

    def measured_files(self) -> list[str]:
        """The measured file names, sorted."""
        return sorted({name for name, _ in (*self.lines, *self.arcs)})

    def contexts(self) -> list[str]:
        """The contexts present, sorted."""
        return sorted({context for _, context in (*self.lines, *self.arcs)})

    @cached_property
    def _contexts_by_file(self) -> dict[str, list[str]]:
        """Each measured file's contexts: built once, so that asking for every file's
        lines costs the size of the data, not its square."""
        found: dict[str, list[str]] = {}
        for name, context in (*self.lines, *self.arcs):
            found.setdefault(name, []).append(context)
        return found

    def executed_lines(self, name: str, context: str | None = None) -> set[int]:
        """Lines of ``name`` that ran (in ``context``, or in any context)."""
        wanted = self._contexts_by_file.get(name, []) if context is None else [context]
        found: set[int] = set()
        for ctx in wanted:
            if (bits := self.lines.get((name, ctx))) is not None:
                found.update(bits_to_lines(bits))
            found |= arc_lines(self.arcs.get((name, ctx), ()))
        return found

    def executed_by_context(self) -> dict[str, dict[str, set[int]]]:
        """For each context, each measured file's executed lines."""
        result: dict[str, dict[str, set[int]]] = {}
        for (path, context), value in self.lines.items():
            result.setdefault(context, {}).setdefault(path, set()).update(bits_to_lines(value))
        for (path, context), arcs in self.arcs.items():
            result.setdefault(context, {}).setdefault(path, set()).update(arc_lines(arcs))
        return result

    def _by_context(self, only: Callable[[str], bool] | None) -> dict[str, dict[str, Any]]:
        """What to write, grouped by context in one pass (coverage.py's API takes one
        context at a time): arcs, numbits, or for mixed data (numbits, arcs)."""
        arcs = self.kind == "arcs"
        by_context: dict[str, dict[str, Any]] = {}
        for (name, context), value in sorted(self.arcs.items() if arcs else self.lines.items()):
            if only is None or only(name):
                by_context.setdefault(context, {})[name] = value
        if self.mixed:  # the lines of the branch files join the line data
            for (name, context), value in self.arcs.items():
                if only is None or only(name):
                    per = by_context.setdefault(context, {})
                    per[name] = (per.get(name, 0), value)
        return by_context

    def write(self, output: Path, *, only: Callable[[str], bool] | None = None) -> Path:
        """Write a coverage.py data file atomically (a temporary file renamed into place).

        ``only`` keeps just the measured files it accepts. A versioned name is
        stored as its path with the sha256 of its code in ``meta``; two versions
        of one path are stored under two names, each with the path it stands for.
        Written with SQLite directly, in coverage.py's schema (:data:`SCHEMA`):
        no coverage.py is imported, which the layer's delivery could not afford.
        """
        names = _stored_names({*self.measured_files(), *self.tracers})
        output.parent.mkdir(parents=True, exist_ok=True)
        temporary = output.parent / f"{temporary_prefix(output)}{os.urandom(6).hex()}.tmp"
        # Created here, not found there (O_EXCL): as tempfile.mkstemp, without importing
        # tempfile (with shutil, random, bz2 and lzma) into the function's runtime.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            with contextlib.closing(sqlite3.connect(temporary)) as connection:
                # Nothing to recover if this process dies: the file is renamed into
                # place only once written.
                connection.execute("pragma journal_mode = off")
                connection.execute("pragma synchronous = off")
                connection.executescript(SCHEMA)
                with connection:
                    self._insert(connection, names, only)
                    _write_identity(connection, names, self, only)
            Path(temporary).replace(output)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return output

    def _insert(
        self,
        connection: sqlite3.Connection,
        names: Mapping[str, str],
        only: Callable[[str], bool] | None,
    ) -> None:
        arcs = self.kind == "arcs"
        start_data_file(connection, arcs)
        file_ids: dict[str, int] = {}

        def file_id(name: str) -> int:
            stored = names[name]
            if stored not in file_ids:
                file_ids[stored] = len(file_ids) + 1
            return file_ids[stored]

        for context_id, (context, per_file) in enumerate(sorted(self._by_context(only).items()), 1):
            connection.execute(
                "insert into context (id, context) values (?, ?)", (context_id, context)
            )
            if arcs:
                connection.executemany(
                    "insert into arc (file_id, context_id, fromno, tono) values (?, ?, ?, ?)",
                    (
                        (file_id(name), context_id, start, end)
                        for name, value in per_file.items()
                        for start, end in sorted(value)
                    ),
                )
            else:
                connection.executemany(
                    "insert into line_bits (file_id, context_id, numbits) values (?, ?, ?)",
                    (
                        (file_id(name), context_id, _numbits(value))
                        for name, value in per_file.items()
                    ),
                )
        tracers = [
            (file_ids[names[name]], tracer)
            for name, tracer in self.tracers.items()
            if tracer and (only is None or only(name)) and names[name] in file_ids
        ]
        connection.executemany(
            "insert into file (id, path) values (?, ?)",
            ((number, stored) for stored, number in file_ids.items()),
        )
        connection.executemany("insert into tracer (file_id, tracer) values (?, ?)", tracers)


def _stored_names(names: Iterable[str]) -> dict[str, str]:
    """The name each merged name is stored under: its path, unless the path has
    other versions in the same file (then the path and its digest)."""
    by_path: dict[str, list[str]] = {}
    for name in names:
        by_path.setdefault(split_version(name)[0], []).append(name)
    # A path with one name, or the name with no version, is stored as the path itself.
    stored = {
        name: path
        for path, found in by_path.items()
        for name in found
        if len(found) == 1 or VERSION_MARK not in name
    }
    taken = set(stored.values())
    for path, found in by_path.items():
        for name in found:
            if name in stored:
                continue
            # A measured file may itself be named like "path#digest": never share its name.
            candidate = f"{path}#{split_version(name)[1]}"
            while candidate in taken:
                candidate += "#"
            taken.add(candidate)
            stored[name] = candidate
    return stored


def _write_identity(
    connection: sqlite3.Connection,
    names: Mapping[str, str],
    combined: Combined,
    only: Callable[[str], bool] | None,
) -> None:
    """Record each versioned name's sha256, objects, newest date and (if renamed) path."""
    rows = []
    for name, stored in names.items():
        path, digest = split_version(name)
        if digest is None or (only is not None and not only(name)):
            continue
        rows.append((identity.SHA256 + stored, digest))
        if (objects := combined.objects.get(name, 1)) != 1:  # one: an object's own data
            rows.append((identity.OBJECTS + stored, str(objects)))
        if newest := combined.newest.get(name):
            rows.append((identity.NEWEST + stored, newest))
        if stored != path:
            rows.append((identity.PATH + stored, path))
    connection.executemany("insert or replace into meta (key, value) values (?, ?)", rows)


def _numbits(value: int | tuple[int, frozenset[Arc]]) -> bytes:
    """A slot's lines as coverage.py's numbits blob: numbits, or numbits and the
    arcs of mixed data (whose lines join the line data)."""
    if not isinstance(value, int):
        bits, arcs = value
        value = bits | lines_to_bits(arc_lines(arcs))
    return numbits(value)


def as_in_lambda(data: DataFile) -> DataFile:
    """``data`` with the files under its recorded task root named as under ``/var/task``."""
    root = data.origin.get(identity.TASK_ROOT, LAMBDA_TASK_ROOT).rstrip("/") + "/"
    if root in ("/", LAMBDA_TASK_ROOT + "/"):
        return data

    def rename(name: str) -> str:
        path, digest = split_version(name)
        if not path.startswith(root):
            return name
        path = f"{LAMBDA_TASK_ROOT}/{path.removeprefix(root)}"
        return versioned(path, digest) if digest else path

    return data._replace(
        lines={(rename(name), context): bits for (name, context), bits in data.lines.items()},
        arcs={(rename(name), context): arcs for (name, context), arcs in data.arcs.items()},
        tracers={rename(name): tracer for name, tracer in data.tracers.items()},
        objects={rename(name): count for name, count in data.objects.items()},
        newest={rename(name): day for name, day in data.newest.items()},
    )


class Merger:
    """Accumulates data files into in-memory sets, one slot per (file, context).

    ``path_map`` renames measured files (coverage's ``[paths]`` remapping) or
    drops them by returning None; it is called once per distinct path.
    """

    def __init__(self, path_map: PathMap | None = None, *, lambda_paths: bool = True) -> None:
        self._path_map = path_map
        # Files recorded under another task root (the local emulator's) are merged as
        # under Lambda's; the runtime, adding to its own data, keeps them as they are.
        self._lambda_paths = lambda_paths
        self._mapped: dict[str, str | None] = {}
        self._lines: dict[Slot, int] = {}
        self._arcs: dict[Slot, set[PackedArc]] = {}
        self._tracers: dict[str, str] = {}
        self.files_by_kind: dict[str, int] = {"lines": 0, "arcs": 0, "empty": 0}
        self.objects: Counter[str] = Counter()  # versioned name -> objects that recorded it
        self.newest: dict[str, str] = {}  # versioned name -> the date of its newest object

    def _map(self, name: str) -> str | None:
        if self._path_map is None:
            return name
        if name not in self._mapped:
            path, digest = split_version(name)
            mapped = self._path_map(path)
            if mapped is not None and digest is not None:
                mapped = versioned(mapped, digest)
            self._mapped[name] = mapped
        return self._mapped[name]

    def _count(self, data: DataFile, day: str) -> None:
        """Count the objects that recorded each version of a file, and date the newest."""
        names = {name for name, _ in data.lines} | {name for name, _ in data.arcs}
        for name in names:
            if VERSION_MARK in name and (mapped := self._map(name)) is not None:
                self._note(mapped, data.objects.get(name, 1), data.newest.get(name, day))

    def _note(self, name: str, objects: int, day: str) -> None:
        self.objects[name] += objects
        if day > self.newest.get(name, ""):
            self.newest[name] = day

    def add(self, data: DataFile, label: Labeler | None = None, day: str = "") -> None:
        """Add one file's data, its contexts renamed by ``label``; ``day`` (YYYY/MM/DD)
        dates the object, to tell which version of a file is the newest."""
        if self._lambda_paths:
            data = as_in_lambda(data)
        for name, tracer in data.tracers.items():
            mapped = self._map(name)
            if mapped is not None and self._tracers.setdefault(mapped, tracer) != tracer:
                raise InvalidDataFileError(f"conflicting file tracer for {mapped}")
        self.files_by_kind[data.kind or "empty"] += 1
        self._count(data, day)
        for (name, context), bits in data.lines.items():
            mapped = self._map(name)
            if mapped is not None:
                key = (mapped, label(context) if label else context)
                self._lines[key] = self._lines.get(key, 0) | bits
        for (name, context), arcs in data.arcs.items():
            mapped = self._map(name)
            if mapped is not None:
                key = (mapped, label(context) if label else context)
                found = self._arcs.get(key)
                if found is None:
                    self._arcs[key] = set(arcs)
                else:
                    found |= arcs

    def absorb(self, other: Merger) -> None:
        """Add everything another merger holds, through this one's path map.

        The reduce step of a parallel merge: workers merge with no path map
        (it need not be picklable) and the parent maps once per distinct path.
        """
        for name, tracer in other._tracers.items():
            mapped = self._map(name)
            if mapped is not None:
                self._tracers.setdefault(mapped, tracer)
        for (name, context), bits in other._lines.items():
            mapped = self._map(name)
            if mapped is not None:
                self._lines[mapped, context] = self._lines.get((mapped, context), 0) | bits
        for (name, context), packed in other._arcs.items():
            mapped = self._map(name)
            if mapped is not None:
                self._arcs.setdefault((mapped, context), set()).update(packed)
        for kind, count in other.files_by_kind.items():
            self.files_by_kind[kind] += count
        for name, count in other.objects.items():
            if (mapped := self._map(name)) is not None:
                self._note(mapped, count, other.newest.get(name, ""))

    def result(self) -> Combined:
        """The combined data; mixed line and branch inputs are combined as line data."""
        has_lines = self.files_by_kind["lines"] > 0
        has_arcs = self.files_by_kind["arcs"] > 0
        mixed = has_lines and has_arcs
        kind: Kind | None = "lines" if has_lines else ("arcs" if has_arcs else None)
        return Combined(
            kind,
            dict(self._lines),
            {key: frozenset(map(unpack_arc, packed)) for key, packed in self._arcs.items()},
            dict(self._tracers),
            mixed=mixed,
            objects=dict(self.objects),
            newest=dict(self.newest),
        )
