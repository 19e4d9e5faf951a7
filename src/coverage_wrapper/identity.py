"""Code identity: which bytes each measured file held when it ran, kept in the data file.

A coverage.py data file names files by path only; after a deploy the same path
holds other code, and lines recorded against the old code would be shown on the
new. So every data file lambdacov writes also says, for each measured file, the
sha256 of the bytes that ran, and where they ran: the function, its version and
its task root. These are rows of coverage.py's own ``meta`` table, under keys
coverage.py never reads, so ``coverage report`` and ``coverage combine`` read the
file as before, and a copied or cached object keeps its identity.

Keys (every value is text):

``lambdacov:function``, ``lambdacov:function_version``, ``lambdacov:task_root``
    Where the data was recorded (``AWS_LAMBDA_FUNCTION_NAME``,
    ``AWS_LAMBDA_FUNCTION_VERSION``, ``LAMBDA_TASK_ROOT``).
``lambdacov:started``
    When the execution environment started (UTC, ISO 8601, to the second): when
    its first process made the environment's id. Code is deployed between
    environments, never within one, so ``combine --since-deploy`` keeps the
    objects of environments started since the function's last update.
``lambdacov:sha256:<name>``
    The hex sha256 of the file measured as ``<name>`` (the path in the ``file``
    table).
``lambdacov:path:<name>``
    Only in combined files holding two versions of one path: the path a stored
    ``<name>`` stands for (each version is stored under a name of its own).
``lambdacov:objects:<name>``, ``lambdacov:newest:<name>``
    Only in combined files: how many objects recorded that version of the file,
    and the date (``YYYY/MM/DD``, from their keys) of the newest.

When: the runtime stamps a data file during delivery, after coverage.py has
closed it (:func:`stamp`), hashing the file as it is on disk then. A file is
hashed once per execution environment: the environment's aggregate keeps its
row, and the per-request files of ``COVERAGE_FLUSH=invocation`` reuse the
digests already computed. A measured file that cannot be read then (deleted,
not a regular file) gets no row: its lines stay, without an identity.

The bytes themselves may be kept too: ``PREFIX + SOURCES + <sha256>`` in the
data's bucket holds the file whose digest that is (see
:mod:`coverage_wrapper.sources`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import sqlite3
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

FUNCTION = "lambdacov:function"
FUNCTION_VERSION = "lambdacov:function_version"
TASK_ROOT = "lambdacov:task_root"
STARTED = "lambdacov:started"
SHA256 = "lambdacov:sha256:"
PATH = "lambdacov:path:"
OBJECTS = "lambdacov:objects:"
NEWEST = "lambdacov:newest:"
PREFIX = "lambdacov:"
# Where the source snapshots live, under the data's prefix: PREFIX + SOURCES + digest.
SOURCES = "sources/"
# Markers of sets of versions all in S3 (see coverage_wrapper.sources): PREFIX + SOURCE_SETS +
# the sha256 of the sorted digests, one a line.
SOURCE_SETS = f"{SOURCES}sets/"

# Each origin key, and the variable Lambda sets for it.
_ORIGIN = {
    FUNCTION: "AWS_LAMBDA_FUNCTION_NAME",
    FUNCTION_VERSION: "AWS_LAMBDA_FUNCTION_VERSION",
    TASK_ROOT: "LAMBDA_TASK_ROOT",
}


def origin(environ: Mapping[str, str]) -> dict[str, str]:
    """The origin rows for an environment's variables; a variable not set has no row."""
    return {key: environ[name] for key, name in _ORIGIN.items() if environ.get(name)}


def open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """Open a regular file for reading; OSError when ``path`` is anything else.

    Opened without blocking: a FIFO where a source file was would otherwise
    wait for a writer for ever.
    """
    stream = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
        stream.close()
        raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(path))
    return stream


def file_digest(path: str | os.PathLike[str]) -> str | None:
    """The hex sha256 of a regular file's bytes; None when it is not one or cannot be read."""
    try:
        with open_regular(path) as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()  # reads in chunks
    except (OSError, ValueError):  # ValueError: a name with a NUL
        return None


def source_key(prefix: str, digest: str) -> str:
    """The key of the source snapshot of ``digest`` under a (normalised) key prefix."""
    return f"{prefix}{SOURCES}{digest}"


def source_set_key(prefix: str, digests: Iterable[str]) -> str:
    """The key of the marker saying that every snapshot of ``digests`` is in S3: one HEAD
    instead of one per file, for the next environment that runs the same versions."""
    joined = "\n".join(sorted(set(digests))).encode("utf-8")
    return f"{prefix}{SOURCE_SETS}{hashlib.sha256(joined).hexdigest()}"


def _connect(data_file: Path, mode: str) -> sqlite3.Connection:
    """Open an existing database, in autocommit mode (sqlite3 would create a missing one)."""
    uri = f"{data_file.resolve().as_uri()}?mode={mode}"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def recorded(data_file: Path) -> dict[str, str]:
    """The sha256 rows of a data file: {measured name: digest}."""
    with contextlib.closing(_connect(data_file, "ro")) as connection:
        return {
            key.removeprefix(SHA256): value
            for key, value in connection.execute("select key, value from meta")
            if isinstance(key, str) and key.startswith(SHA256) and isinstance(value, str)
        }


def stamp(
    data_file: Path, where: Mapping[str, str], known: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Write the origin rows, and a sha256 row for each measured file that has none.

    ``data_file`` is a closed coverage.py data file; ``where`` the origin rows
    (:func:`origin`); ``known`` digests already computed in this environment,
    by measured name, used instead of reading those files again. One
    transaction: the file holds all the new rows or none. Returns the rows
    written for files, {name: digest}. sqlite3.Error when the file is missing
    or not a coverage data file.
    """
    known = known or {}
    connection = _connect(data_file, "rw")
    try:
        connection.execute("begin immediate")  # no other writer between reading and writing
        names = [name for (name,) in connection.execute("select path from file")]
        stamped = {
            key.removeprefix(SHA256)
            for (key,) in connection.execute("select key from meta")
            if isinstance(key, str) and key.startswith(SHA256)
        }
        new: dict[str, str] = {}
        for name in names:
            if not isinstance(name, str) or name in stamped:
                continue
            digest = known.get(name) or file_digest(name)
            if digest is not None:
                new[name] = digest
        rows = [*where.items(), *((SHA256 + name, digest) for name, digest in new.items())]
        connection.executemany("insert or replace into meta (key, value) values (?, ?)", rows)
        connection.execute("commit")
    except BaseException:
        if connection.in_transaction:
            connection.execute("rollback")
        raise
    finally:
        connection.close()
    return new
