"""Source snapshots: each version of a measured file, kept once in S3 under its sha256.

A data file says which bytes ran (:mod:`coverage_wrapper.identity`), but after a
deploy the function's code is other bytes, and a report of the old data needs
the old ones. So delivery also uploads each file version to
``PREFIX/sources/<sha256>``:

* once per fleet: a HEAD first, and a version already there is not sent again.
  A HEAD refused with 403 (a role allowed to write but not to read) is answered
  with a PUT: the same bytes under the same key;
* one HEAD for a whole set: once every version an environment was waiting to
  send is in S3, an empty marker ``PREFIX/sources/sets/<sha256 of the sorted
  digests>`` says so (:func:`coverage_wrapper.identity.source_set_key`). The next
  environment waiting for the same versions (the same code, the same path through
  it) asks for the marker alone: one request on its first delivery where there
  were one per file. A marker is believed for a day (:data:`SET_TRUSTED_SECONDS`):
  a version deleted or expired meanwhile is missed until then, and sent again by
  the first environment that finds the marker older;
* once per execution environment: the versions settled (uploaded, found in S3,
  or not to be uploaded) are remembered in the spool's state directory, which
  the runtime and the extension share;
* never before the data: in the delivery pass (the extension's, after the
  response), after the data upload and within the same deadline; what is left
  waits for a later pass;
* only the bytes that were hashed: the PUT carries the digest as its checksum,
  so S3 refuses a file that changed since.

Files larger than MAX_SOURCE_BYTES are not uploaded (a DEBUG record says so).

Layout in the spool's state directory, read and written under its delivery lock::

    sources.json     {"format": 1, "files": {name: sha256}, "settled": [sha256, ...]}
                     (files: the digests computed here, reused rather than hashed again)
    sources-waiting  present while some version seen here is not settled
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coverage_wrapper import identity
from coverage_wrapper._version import __version__
from coverage_wrapper.errors import S3UploadError
from coverage_wrapper.logging_utils import get_logger
from coverage_wrapper.s3_uploader import S3Uploader

log = get_logger("coverage_wrapper.sources")

# Source files are kilobytes; a file this large is generated or data, not worth a copy.
MAX_SOURCE_BYTES = 4 * 1024 * 1024
# How long a set's marker is taken at its word; after that, its versions are asked for one by
# one again (a version deleted since comes back within this time).
SET_TRUSTED_SECONDS = 24 * 3600
FORMAT_VERSION = 1
# S3's answer to a body whose sha256 is not the checksum sent with it.
_CHANGED = frozenset({"BadDigest"})


class Ledger:
    """What ``sources.json`` holds: the files seen here and the versions settled."""

    def __init__(
        self, files: dict[str, str] | None = None, settled: set[str] | None = None
    ) -> None:
        self.files: dict[str, str] = {} if files is None else files
        self.settled: set[str] = set() if settled is None else settled

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ledger):
            return NotImplemented
        return (self.files, self.settled) == (other.files, other.settled)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Ledger({self.files!r}, {self.settled!r})"

    @classmethod
    def read(cls, path: Path) -> Ledger:
        """The ledger at ``path``; an empty one when there is none or it cannot be read.

        Forgetting costs only HEADs: a version already in S3 is not sent again.
        """
        try:
            document: Any = json.loads(path.read_text(encoding="utf-8"))
            if document.get("format") != FORMAT_VERSION:
                return cls()
            return cls(
                {str(name): str(digest) for name, digest in document["files"].items()},
                {str(digest) for digest in document["settled"]},
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return cls()

    def write(self, path: Path) -> None:
        """Replace the file whole (temp + rename): a process killed meanwhile leaves the old one."""
        document = {"format": FORMAT_VERSION, "files": self.files, "settled": sorted(self.settled)}
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temp.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
            temp.replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise


class Outcome:
    """What one pass over the snapshots did."""

    def __init__(self) -> None:
        self.uploaded: list[str] = []
        self.failed: S3UploadError | None = None
        self.deferred = False  # out of time: versions left for a later pass


class Snapshots:
    """The snapshots of one execution environment's files, and their delivery."""

    def __init__(self, state_dir: Path, uploader: S3Uploader, prefix: str) -> None:
        self.path = state_dir / "sources.json"
        self.marker = state_dir / "sources-waiting"
        self.uploader = uploader
        self.prefix = prefix

    def known(self) -> dict[str, str]:
        """The digests computed in this environment, by measured name."""
        return Ledger.read(self.path).files

    def note(self, files: Mapping[str, str]) -> None:
        """Remember newly hashed files ({name: sha256}); their versions wait to be sent."""
        if not files:
            return
        ledger = Ledger.read(self.path)
        ledger.files.update(files)
        ledger.write(self.path)
        if not set(files.values()) <= ledger.settled:
            self.marker.touch()

    def waiting(self) -> bool:
        """True when a version seen here may not be in S3 yet."""
        return self.marker.exists()

    def send(self, deadline: float, also: Mapping[str, str] | None = None) -> Outcome:
        """Upload every version not settled, starting nothing after ``deadline``.

        ``also``: more files ({name: sha256}) than the ledger holds (the aggregate's
        rows). Stops at the first failure: S3 is unlikely to take the next one.
        """
        outcome = Outcome()
        ledger = Ledger.read(self.path)
        waiting: dict[str, str] = {}
        for name, digest in {**ledger.files, **(also or {})}.items():
            if digest not in ledger.settled:
                waiting.setdefault(digest, name)
        # A single version is asked for by itself: a marker would cost as much.
        set_key = identity.source_set_key(self.prefix, waiting) if len(waiting) > 1 else None
        try:
            if set_key and self._set_in_s3(set_key, deadline):
                ledger.settled.update(waiting)
            elif self._send_each(waiting, ledger, outcome, deadline, set_key) is None:
                return outcome  # failed or out of time: a later pass goes on
            with contextlib.suppress(FileNotFoundError):
                self.marker.unlink()
        finally:
            # A ledger that cannot be written (a full /tmp) costs HEADs on a later pass.
            if waiting:
                with contextlib.suppress(OSError):
                    ledger.write(self.path)
        return outcome

    def _send_each(
        self,
        waiting: Mapping[str, str],
        ledger: Ledger,
        outcome: Outcome,
        deadline: float,
        set_key: str | None,
    ) -> bool | None:
        """Send the versions one by one; None when a failure or the deadline stopped it,
        else whether every one is in S3 now (their set, if any, then marked as such)."""
        all_there = True
        for digest, name in sorted(waiting.items()):
            if time.monotonic() >= deadline:
                outcome.deferred = True
                return None
            try:
                key, there = self._send(digest, name, deadline)
            except S3UploadError as error:
                if error.code not in _CHANGED:
                    outcome.failed = error
                    return None
                # The file is no longer the bytes that ran: those are gone.
                log.debug(
                    "Source not uploaded: changed since it was hashed",
                    extra={"data": {"path": name, "sha256": digest}},
                )
                key, there = None, False
            if key:
                outcome.uploaded.append(key)
            ledger.settled.add(digest)
            all_there = all_there and there
        if all_there and set_key:
            self._mark_set(set_key, len(waiting), deadline)
        return all_there

    def _set_in_s3(self, key: str, deadline: float) -> bool:
        """True when the marker of this set of versions, written within the last
        :data:`SET_TRUSTED_SECONDS`, says they are all in S3 already.

        An older marker may have outlived a version it vouches for (deleted, or expired by
        a lifecycle rule): each version is then asked for by itself, and the marker written
        anew. Any failure reads as "not known" too.
        """
        try:
            written = self.uploader.modified(key, within=deadline - time.monotonic())
        except S3UploadError:
            return False
        if written is None:
            return False
        # A date ahead of this clock by as much is no better than one as far behind it.
        return abs(time.time() - written.timestamp()) < SET_TRUSTED_SECONDS

    def _mark_set(self, key: str, versions: int, deadline: float) -> None:
        """Leave the marker ``key`` of a set of ``versions``, every one of which is in S3."""
        if time.monotonic() >= deadline:
            return
        try:
            self.uploader.put(
                key,
                b"",
                {"lambdacov-version": __version__, "versions": str(versions)},
                within=deadline - time.monotonic(),
                content_type="text/plain",
            )
        except S3UploadError as error:  # costs the next environment HEADs, nothing more
            log.debug(f"Source set not marked: {error}", extra={"data": {"key": key}})

    def _send(self, digest: str, name: str, deadline: float) -> tuple[str | None, bool]:
        """Upload one version: its key (None when it is not sent), and whether it is in S3
        now (False when it is not to be uploaded)."""
        body = _contents(name)
        if body is None:
            return None, False
        key = identity.source_key(self.prefix, digest)
        if self.uploader.head(key, within=deadline - time.monotonic()):
            return None, True
        self.uploader.put(
            key,
            body,
            {"lambdacov-version": __version__},
            within=deadline - time.monotonic(),
            content_type="text/x-python" if name.endswith(".py") else "application/octet-stream",
            sha256=digest,
        )
        return key, True


def _contents(name: str) -> bytes | None:
    """A source file's bytes; None (and a DEBUG record) when it is not to be uploaded."""
    try:
        with identity.open_regular(name) as stream:
            size = os.fstat(stream.fileno()).st_size
            if size <= MAX_SOURCE_BYTES:
                return stream.read()
            reason = f"larger than {MAX_SOURCE_BYTES} bytes"
    except (OSError, ValueError) as error:  # ValueError: a name with a NUL
        reason = f"unreadable: {error}"
    log.debug(f"Source not uploaded: {reason}", extra={"data": {"path": name}})
    return None
