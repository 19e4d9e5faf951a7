"""The spool: coverage deltas on local disk, waiting to be delivered to S3.

Layout under the spool root (``COVERAGE_SPOOL_DIR``, default ``/tmp/lambdacov``)::

    environment-id        this execution environment's id (created once, O_EXCL)
    pending/*.json        one delta per checkpoint, written atomically (temp + rename)
    corrupt/              deltas that could not be read, kept for inspection
    state/aggregate.coverage   the environment's merged coverage.py data file
    state/dirty           present while the aggregate has data not yet in S3
    state/lock            serialises delivery between runtime processes and the final pass
    state/sources.json    the source files hashed here and the snapshots settled (sources.py)
    state/sources-waiting present while a source snapshot waits to be uploaded
    extension.fifo        the FIFO the runtime tells the extension on (see notify.py)

Every file appears whole or not at all, so a process killed at any moment
(timeout, SIGKILL at shutdown) leaves nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import math
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from coverage_wrapper.errors import ConfigurationError
from coverage_wrapper.locations import FIFO_NAME
from coverage_wrapper.recorder import Delta

FORMAT_VERSION = 1
_sequence = itertools.count()
# A full disk may empty again: deltas wait in memory meanwhile (see Engine._spool_checkpoint).
_TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT})


def _file_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError("a file name is not a string")
    return name


def _measured(kind: str, items: object) -> set[Any]:
    if not isinstance(items, list):
        raise TypeError("a file's lines are not a list")
    if kind == "arcs":
        return {(int(a), int(b)) for a, b in items}
    return {int(n) for n in items}


def _reason(error: OSError, root: Path) -> str:
    """``Not a directory``, naming the file when it is not the spool's root."""
    reason = error.strerror or str(error)
    if error.filename is not None and os.fsdecode(error.filename) != str(root):
        reason += f" ({os.fsdecode(error.filename)})"
    return reason


def new_id() -> str:
    """A random 128-bit id in 32 hex digits (``uuid`` would import ``platform`` as the
    runtime starts)."""
    return os.urandom(16).hex()


class SpoolBusyError(TimeoutError):
    """Another process holds the delivery lock."""


class SpooledDelta(NamedTuple):
    """A delta read back from the spool, with where and when it came from."""

    path: Path
    delta: Delta
    request_id: str
    created: float


def _open_lock(path: Path) -> int:
    """The lock file, opened for flock without ever blocking.

    Opening a FIFO for writing waits for a reader, for ever if none comes: in
    Lambda that would hold the invocation until its timeout. With O_NONBLOCK a
    FIFO fails at once (or opens, and is refused as not a regular file).
    """
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o600)
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise OSError(errno.EINVAL, f"{path.name} is not a regular file")
    return handle


class SpoolDirectory:
    """The on-disk spool shared by the runtime process and the extension process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pending_dir = root / "pending"
        self.corrupt_dir = root / "corrupt"
        self.state_dir = root / "state"
        self.fifo_path = root / FIFO_NAME
        self.aggregate_path = self.state_dir / "aggregate.coverage"
        self.dirty_marker = self.state_dir / "dirty"
        self._own_id: str | None = None

    def ensure(self) -> None:
        """Create the spool's directories."""
        for path in (self.pending_dir, self.corrupt_dir, self.state_dir):
            path.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> None:
        """Create the spool and check that it can be used; ConfigurationError if it cannot.

        The runtime and the extension's final pass call this before they use the
        spool, and both take the same way out when it fails: the runtime turns
        coverage off for the environment (one log line), the final pass delivers
        nothing. Neither falls back to another directory: the processes of an
        environment must agree on one spool, and a user
        who named a directory did not ask for data to be written anywhere else.
        A full disk is not a reason to stop: it may empty again, and deltas wait
        in memory meanwhile.
        """
        probe = self.pending_dir / f".probe-{os.getpid()}.tmp"
        try:
            self.ensure()
            probe.touch()
            probe.unlink()
            os.close(_open_lock(self.state_dir / "lock"))
        except OSError as error:
            if error.errno not in _TRANSIENT:
                raise ConfigurationError(self._unusable(_reason(error, self.root))) from error
        except ValueError as error:  # a name the file system encoding cannot express
            raise ConfigurationError(self._unusable(str(error))) from error

    def _unusable(self, reason: str) -> str:
        """The one line that says this spool cannot be used, why, and what to do."""
        return (
            f"COVERAGE_SPOOL_DIR={self.root} cannot be used: {reason};"
            " set COVERAGE_SPOOL_DIR to a writable directory on local disk"
            " (the default is $TMPDIR/lambdacov, /tmp/lambdacov in Lambda)"
        )

    def environment_id(self) -> str:
        """This execution environment's id, the same for every process in it.

        The first process to ask creates it; /tmp outlives a runtime reset, so
        the id (and the S3 object it names) does too. It is read each time
        because another process may rotate it; when /tmp cannot hold it (full),
        this process keeps one of its own.
        """
        path = self.root / "environment-id"
        for _ in range(2):
            try:
                text = path.read_text(encoding="ascii").strip()
            except OSError:
                text = ""
            if text:
                return text
            if not self._publish_id(new_id()):
                break
        if self._own_id is None:
            self._own_id = new_id()
        return self._own_id

    def date_environment(self) -> None:
        """Make the environment's id now, at init: its file's time dates the environment.

        Not under SnapStart: what init makes is in every environment restored from
        the snapshot, and they would all share the id (and the S3 object it names).
        There the id is made by the first process that needs it after the restore.
        """
        if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start":
            self.environment_id()

    def environment_started(self) -> float | None:
        """When this environment's id was made (a POSIX time), None if it cannot be read."""
        try:
            return (self.root / "environment-id").stat().st_mtime
        except OSError:
            return None

    def _publish_id(self, candidate: str) -> bool:
        """Create the id file whole (a link of a written file); False if /tmp refuses."""
        temp = self.root / f".environment-id.{os.getpid()}.{candidate}"
        try:
            self.ensure()
            temp.write_text(candidate, encoding="ascii")
            os.link(temp, self.root / "environment-id")  # fails if another process won
        except FileExistsError:
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
        return True

    def rotate_environment_id(self) -> str:
        """Give this environment a new id (its next object gets a new key) and return it."""
        self.ensure()
        fresh = new_id()
        temp = self.root / f".environment-id.{os.getpid()}.tmp"
        temp.write_text(fresh, encoding="ascii")
        temp.replace(self.root / "environment-id")
        return fresh

    def write(self, delta: Delta, request_id: str) -> Path:
        """Write ``delta`` atomically and return its path; OSError if the disk is full."""
        self.ensure()
        document = {
            "format": FORMAT_VERSION,
            "kind": delta.kind,
            "request_id": request_id,
            "created": time.time(),
            "files": {name: sorted(items) for name, items in delta.files.items()},
        }
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence)}.json"
        final = self.pending_dir / name
        temp = self.pending_dir / f".{name}.tmp"
        try:
            with temp.open("w", encoding="utf-8") as handle:
                json.dump(document, handle, separators=(",", ":"))
            temp.replace(final)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return final

    def pending(self) -> list[Path]:
        """The complete deltas waiting for delivery, oldest first."""
        try:
            return sorted(p for p in self.pending_dir.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return []

    def read(self, path: Path) -> SpooledDelta:
        """Read one delta; ValueError when it is not a delta this version wrote."""
        try:
            document: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"unreadable delta: {error}") from error
        if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
            raise ValueError("not a lambdacov delta (unknown format)")
        kind = document.get("kind")
        files = document.get("files")
        if kind not in ("lines", "arcs") or not isinstance(files, dict):
            raise ValueError("malformed delta: bad kind or files")
        delta = Delta(kind, {})
        try:
            for name, items in files.items():
                delta.files[_file_name(name)] = _measured(kind, items)
        except (TypeError, ValueError) as error:  # a null, a pair for a line, a line for a pair
            raise ValueError(f"malformed delta: {error}") from error
        return SpooledDelta(
            path=path,
            delta=delta,
            request_id=str(document.get("request_id") or "unknown"),
            created=float(document.get("created") or 0.0),
        )

    def quarantine(self, path: Path) -> Path:
        """Move an unreadable delta aside so it is reported once, not retried forever."""
        self.ensure()
        target = self.corrupt_dir / f"{time.time_ns()}-{path.name}"
        path.replace(target)
        return target

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the delivery lock (an flock, released if the holder dies).

        With ``timeout``, give up after that many seconds with SpoolBusyError: a
        handler must never wait behind another process's upload.
        """
        self.ensure()
        with os.fdopen(_open_lock(self.state_dir / "lock"), "ab", buffering=0) as handle:
            if timeout is None or not math.isfinite(timeout):
                fcntl.flock(handle, fcntl.LOCK_EX)
            else:
                give_up = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= give_up:
                            raise SpoolBusyError("the spool is being delivered") from None
                        time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
