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
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["lines", "arcs"]
Arc = tuple[int, int]
PackedArc = str  # see pack_arc
Slot = tuple[str, str]  # (measured file, context)

# The coverage.py SQLite schema the direct reader was checked against (coverage 7.x).
KNOWN_SCHEMA_VERSION = 7
SQLITE_MAGIC = b"SQLite format 3\x00"
# Bounds on one object, far beyond any real function: a hostile or broken file is
# refused with a reason instead of exhausting memory.
MAX_FILES_PER_OBJECT = 100_000
MAX_PATH_LENGTH = 4096

# Keys are PREFIX/YYYY/MM/DD/<function>-<id>.coverage; <id> is an environment id
# (32 hex digits) or a request id (a UUID).
_KEY_NAME = re.compile(
    r"^(?P<function>.+?)-(?P<id>[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})"
    r"\.coverage$"
)


class InvalidDataFileError(Exception):
    """A file that is not a readable coverage.py data file; the message says why."""


@dataclass(frozen=True)
class DataFile:
    """What one coverage data file holds: line numbits or arcs per (file, context)."""

    kind: Kind | None  # None: the file measured nothing
    lines: Mapping[Slot, int] = field(default_factory=dict)
    arcs: Mapping[Slot, frozenset[PackedArc]] = field(default_factory=dict)
    tracers: Mapping[str, str] = field(default_factory=dict)


# Arcs are (from, to) line numbers, negative for entries and exits. Each is
# packed into one integer with 31 bits per side, which SQLite computes in the
# query (64-bit arithmetic), so numbers must lie in [-2**30, 2**30).
_BIAS = 1 << 30
_LOW = (1 << 31) - 1
# A row whose numbers are not integers in range packs to 'x' instead. The unary
# '+' takes away the columns' declared type, so values are compared as stored,
# whatever a file declares: text and blobs sort after every number and NULL
# compares as unknown, so they fail. A REAL in range passes, but the arithmetic
# keeps it REAL, which SQLite always writes with a '.' (an infinite one cannot be
# in range). A group's text with neither 'x' nor '.' is digits and commas only.
_PACKED_ARC_SQL = (
    f"case when +fromno >= -{_BIAS} and +fromno < {_BIAS} "
    f"and +tono >= -{_BIAS} and +tono < {_BIAS} "
    f"then (fromno + {_BIAS}) * {1 << 31} + (tono + {_BIAS}) else 'x' end"
)


def pack_arc(start: int, end: int) -> PackedArc:
    """An arc as the direct reader's SQL writes it: its packed integer, in decimal."""
    return str((start + _BIAS) << 31 | (end + _BIAS))


def unpack_arc(packed: PackedArc) -> Arc:
    """The (from, to) pair of a packed arc."""
    number = int(packed)
    return (number >> 31) - _BIAS, (number & _LOW) - _BIAS


def function_from_key(key: str) -> str:
    """The function name in an object key ``.../<function>-<id>.coverage``."""
    name = key.rsplit("/", 1)[-1]
    match = _KEY_NAME.match(name)
    if match:
        return match["function"]
    stem = name.removesuffix(".coverage")
    return stem.rsplit("-", 1)[0] if "-" in stem else stem


def function_context(function: str, context: str) -> str:
    """The context a file's ``context`` gets in combined data: its function's name.

    Lambda records no context of its own (""), so each line's contexts in the
    combined data name the functions that ran it. A context the function set
    itself is kept after a ``|``.
    """
    return f"{function}|{context}" if context else function


def _check_header(name: str) -> None:
    """Refuse empty, non-SQLite and truncated files before SQLite sees them."""
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


def _check_path(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_PATH_LENGTH or "\x00" in name:
        raise InvalidDataFileError("corrupt: a measured file name is not a plausible path")
    return name


def read_data_file(path: Path) -> DataFile:
    """Read one coverage.py data file; raise InvalidDataFileError with the reason if it is bad."""
    reader = getattr(_readers, "reader", None)
    if reader is None or reader.pid != os.getpid():
        reader = _readers.reader = _Reader()
    return reader.read(path)


class _Reader:
    """Reads data files by attaching each in turn to one in-memory SQLite connection.

    A connection of its own per file costs 16 µs more than attaching the file to
    a connection kept open (of about 140 µs in SQLite per file). One per thread,
    and per process: an SQLite connection must not be used across a fork.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._connection = sqlite3.connect(":memory:", uri=True)

    def read(self, path: Path) -> DataFile:
        name = os.fspath(path)
        _check_header(name)
        try:
            self._connection.execute("attach database ? as data", (_readonly_uri(name),))
        except sqlite3.Error as error:
            raise InvalidDataFileError(f"corrupt: {error}") from error
        try:
            try:
                cursor = self._connection.execute(_READ_ALL)
                try:
                    found = _decode(cursor)
                finally:
                    cursor.close()
            except sqlite3.Error as error:
                # Not the schema the statement expects: tell a foreign file from
                # another coverage.py schema version (read through the public API).
                if _schema_version(self._connection) != KNOWN_SCHEMA_VERSION:
                    return _read_with_coverage_api(path)
                raise InvalidDataFileError(f"corrupt: {error}") from error
        finally:
            self._detach()
        return _read_with_coverage_api(path) if found is None else found

    def _detach(self) -> None:
        try:
            self._connection.execute("detach database data")
        except sqlite3.Error:  # left in a state of its own making: start afresh
            self._connection.close()
            self._connection = sqlite3.connect(":memory:", uri=True)


_readers = threading.local()


def _schema_version(connection: sqlite3.Connection) -> int | None:
    """coverage.py's schema version of an attached file; InvalidDataFileError if it has none."""
    try:
        row = connection.execute("select version from data.coverage_schema").fetchone()
    except sqlite3.Error as error:
        raise InvalidDataFileError("not a coverage data file (no coverage_schema)") from error
    return None if row is None else int(row[0])


# A whole file in one statement, each row tagged with its table. Per file, SQLite's
# cost is opening it, parsing its schema and compiling statements: one statement
# instead of three is a quarter of the read. Arcs come one row per (file, context),
# packed and joined by SQLite, so Python splits a string instead of stepping rows.
_VERSION, _FILE, _CONTEXT, _META, _TRACER, _LINE_BITS, _ARCS = range(7)  # the tags below
_READ_ALL = (
    "select 0, version, null, null from data.coverage_schema "  # noqa: S608 - constants only
    "union all select 1, id, path, null from data.file "
    "union all select 2, id, context, null from data.context "
    "union all select 3, key, value, null from data.meta "
    "union all select 4, file_id, tracer, null from data.tracer "
    "union all select 5, file_id, context_id, numbits from data.line_bits "
    f"union all select 6, file_id, context_id, group_concat({_PACKED_ARC_SQL}) "
    "from data.arc group by file_id, context_id"
)


@dataclass
class _Rows:
    """:data:`_READ_ALL`'s rows sorted by table; line and arc rows are resolved last."""

    version: int | None = None
    files: dict[Any, Any] = field(default_factory=dict)
    contexts: dict[Any, Any] = field(default_factory=dict)
    meta: dict[Any, Any] = field(default_factory=dict)
    tracers: list[tuple[Any, Any]] = field(default_factory=list)
    data: list[tuple[Any, Any, Any, Any]] = field(default_factory=list)

    @classmethod
    def sort(cls, rows: Iterable[tuple[Any, Any, Any, Any]]) -> _Rows:
        found = cls()
        for row in rows:
            table, key, value, _ = row
            if table >= _LINE_BITS:
                found.data.append(row)
            elif table == _FILE:
                found.files[key] = value
            elif table == _CONTEXT:
                found.contexts[key] = value
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


def _decode(rows: Iterable[tuple[Any, Any, Any, Any]]) -> DataFile | None:
    """A DataFile from :data:`_READ_ALL`'s rows; None for another schema version."""
    found = _Rows.sort(rows)
    if found.version != KNOWN_SCHEMA_VERSION:
        return None
    _check_count(len(found.files))
    for name in found.files.values():
        _check_path(name)
    # A file says which kind it holds (meta has_arcs); the other table is ignored,
    # as coverage.py does.
    has_arcs = found.meta.get("has_arcs")
    lines: dict[Slot, int] = {}
    arcs: dict[Slot, frozenset[PackedArc]] = {}
    for table, file_id, context_id, value in found.data:
        if table == _LINE_BITS and has_arcs != "1":
            if not isinstance(value, bytes):
                raise InvalidDataFileError("corrupt: line data is not a numbits blob")
            slot = found.slot(file_id, context_id)
            lines[slot] = lines.get(slot, 0) | int.from_bytes(value, "little")
        elif table == _ARCS and has_arcs != "0":
            if not isinstance(value, str) or "x" in value or "." in value:
                raise InvalidDataFileError("corrupt: an arc is not a pair of line numbers")
            slot = found.slot(file_id, context_id)
            packed = frozenset(value.split(","))
            arcs[slot] = arcs[slot] | packed if slot in arcs else packed  # two ids, one path
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
    return DataFile(kind, lines, arcs, tracers)


def _packed(arcs: Iterable[Arc]) -> frozenset[PackedArc]:
    found = list(arcs)
    if any(not -_BIAS <= number < _BIAS for arc in found for number in arc):
        raise InvalidDataFileError("corrupt: an arc is not a pair of line numbers")
    return frozenset(pack_arc(start, end) for start, end in found)


def _read_with_coverage_api(path: Path) -> DataFile:
    """Read a file of another schema version through coverage.py's public API."""
    import coverage

    data = coverage.CoverageData(basename=str(path))
    try:
        data.read()
        measured = sorted(data.measured_files())
        _check_count(len(measured))
        lines: dict[Slot, int] = {}
        arcs: dict[Slot, frozenset[PackedArc]] = {}
        for context in sorted(data.measured_contexts()) or [""]:
            data.set_query_context(context)
            for name in measured:
                _check_path(name)
                if data.has_arcs():
                    found = data.arcs(name)
                    if found:
                        arcs[name, context] = _packed(found)
                else:
                    numbers = data.lines(name)
                    if numbers:
                        lines[name, context] = sum(1 << n for n in set(numbers))
        tracers = {name: tracer for name in measured if (tracer := data.file_tracer(name))}
        kind: Kind | None = ("arcs" if data.has_arcs() else "lines") if measured else None
    except InvalidDataFileError:
        raise
    except Exception as error:  # coverage's DataError, sqlite errors: all mean "unusable"
        raise InvalidDataFileError(f"unreadable by coverage.py: {error}") from error
    finally:
        data.close()
    return DataFile(kind, lines, arcs, tracers)


def _bits_to_lines(bits: int) -> list[int]:
    """Line numbers from a numbits integer (bit n set: line n ran)."""
    found = []
    offset = 0
    while bits:
        chunk = bits & 0xFFFFFFFFFFFFFFFF
        while chunk:
            low = chunk & -chunk
            found.append(offset + low.bit_length() - 1)
            chunk ^= low
        bits >>= 64
        offset += 64
    return found


def arcs_to_bits(arcs: Iterable[Arc]) -> int:
    """The executed lines of branch data, as coverage.py derives them, as numbits."""
    bits = 0
    for start, end in arcs:
        if start > 0:
            bits |= 1 << start
        if end > 0:
            bits |= 1 << end
    return bits


PathMap = Callable[[str], str | None]  # measured path -> combined path, or None to drop
Labeler = Callable[[str], str]  # a file's context -> the context in the combined data


@dataclass(frozen=True)
class Combined:
    """The union of many data files, ready to write or to report on."""

    kind: Kind | None
    lines: Mapping[Slot, int]
    arcs: Mapping[Slot, frozenset[Arc]]
    tracers: Mapping[str, str]
    mixed: bool  # line and branch files were mixed: combined as line data

    def measured_files(self) -> list[str]:
        """The measured file names, sorted."""
        return sorted({name for name, _ in (*self.lines, *self.arcs)})

    def contexts(self) -> list[str]:
        """The contexts present, sorted."""
        return sorted({context for _, context in (*self.lines, *self.arcs)})

    def executed_lines(self, name: str, context: str | None = None) -> set[int]:
        """Lines of ``name`` that ran (in ``context``, or in any context)."""
        bits = 0
        for (path, ctx), value in self.lines.items():
            if path == name and (context is None or ctx == context):
                bits |= value
        for (path, ctx), arcs in self.arcs.items():
            if path == name and (context is None or ctx == context):
                bits |= arcs_to_bits(arcs)
        return set(_bits_to_lines(bits))

    def executed_by_context(self) -> dict[str, dict[str, int]]:
        """For each context, each measured file's executed lines as numbits."""
        result: dict[str, dict[str, int]] = {}
        for (path, context), value in self.lines.items():
            per = result.setdefault(context, {})
            per[path] = per.get(path, 0) | value
        for (path, context), arcs in self.arcs.items():
            per = result.setdefault(context, {})
            per[path] = per.get(path, 0) | arcs_to_bits(arcs)
        return result

    def write(self, output: Path, *, only: Callable[[str], bool] | None = None) -> Path:
        """Write a coverage.py data file atomically (a temporary file renamed into place).

        ``only`` keeps just the measured files it accepts.
        """
        import coverage

        output.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{output.name}.", suffix=".tmp", dir=output.parent
        )
        os.close(handle)
        Path(temporary).unlink()
        try:
            data = coverage.CoverageData(basename=temporary, no_disk=False)
            for context in self.contexts():
                data.set_context(context)
                if self.kind == "arcs":
                    data.add_arcs(
                        {
                            name: sorted(arcs)
                            for (name, ctx), arcs in sorted(self.arcs.items())
                            if ctx == context and (only is None or only(name))
                        }
                    )
                else:
                    data.add_lines(
                        {
                            name: _bits_to_lines(bits)
                            for (name, ctx), bits in sorted(self.lines.items())
                            if ctx == context and (only is None or only(name))
                        }
                    )
            if not self.contexts():
                # An empty result is still a valid data file, of line or branch data.
                if self.kind == "arcs":
                    data.add_arcs({})
                else:
                    data.add_lines({})
            tracers = {k: v for k, v in self.tracers.items() if only is None or only(k)}
            if tracers:
                data.add_file_tracers(tracers)
            data.close()
            Path(temporary).replace(output)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return output


class Merger:
    """Accumulates data files into in-memory sets, one slot per (file, context).

    ``path_map`` renames measured files (coverage's ``[paths]`` remapping) or
    drops them by returning None; it is called once per distinct path.
    """

    def __init__(self, path_map: PathMap | None = None) -> None:
        self._path_map = path_map
        self._mapped: dict[str, str | None] = {}
        self._lines: dict[Slot, int] = {}
        self._arcs: dict[Slot, set[PackedArc]] = {}
        self._tracers: dict[str, str] = {}
        self.files_by_kind: dict[str, int] = {"lines": 0, "arcs": 0, "empty": 0}

    def _map(self, name: str) -> str | None:
        if self._path_map is None:
            return name
        if name not in self._mapped:
            self._mapped[name] = self._path_map(name)
        return self._mapped[name]

    def add(self, data: DataFile, label: Labeler | None = None) -> None:
        """Add one file's data, its contexts renamed by ``label``."""
        for name, tracer in data.tracers.items():
            mapped = self._map(name)
            if mapped is not None and self._tracers.setdefault(mapped, tracer) != tracer:
                raise InvalidDataFileError(f"conflicting file tracer for {mapped}")
        self.files_by_kind[data.kind or "empty"] += 1
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

    def result(self) -> Combined:
        """The combined data; mixed line and branch inputs are combined as line data."""
        has_lines = self.files_by_kind["lines"] > 0
        has_arcs = self.files_by_kind["arcs"] > 0
        mixed = has_lines and has_arcs
        if mixed:
            lines = dict(self._lines)
            for key, packed in self._arcs.items():
                lines[key] = lines.get(key, 0) | arcs_to_bits(map(unpack_arc, packed))
            return Combined("lines", lines, {}, dict(self._tracers), mixed=True)
        kind: Kind | None = "arcs" if has_arcs else ("lines" if has_lines else None)
        return Combined(
            kind,
            dict(self._lines),
            {key: frozenset(map(unpack_arc, packed)) for key, packed in self._arcs.items()},
            dict(self._tracers),
            mixed=False,
        )
