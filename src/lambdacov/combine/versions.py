"""Which recorded version of each file is shown on the code under ``--source-root``.

Every object says which code each of its files held when it ran: the sha256
of the file's bytes (see :mod:`coverage_wrapper.identity`); the merge keeps
each version of a file apart. A line recorded on other code is not a line of
the local file (lines move when others are inserted, and an edited line is
another line), so, per file:

- data recorded on exactly the local file's bytes is shown as it is;
- data recorded on other versions is left out, and the file is listed with the
  versions and objects left out, so a report never shows a line as run that
  did not run in the code shown;
- with ``--carry-forward``, each executed line of another version whose line
  is unchanged between that version and the local one (a line diff of the two,
  the other's text coming from its source snapshot) is carried onto the local
  line; an edited or inserted line never counts as run;
- data recorded with no identity (by a layer older than code identity) is shown
  as recorded, as before.

A file absent from the source root is reported from the source snapshot of its
newest version (by the date of its objects' keys, then by their number), written
to a folder of the cache, so a report needs no checkout; its other versions are
then treated as above. Without a snapshot it is kept under its Lambda path as
before (listed as missing): none of its lines is shown.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverage_wrapper import identity
from coverage_wrapper.datafiles import (
    LAMBDA_TASK_ROOT,
    Arc,
    Combined,
    arc_lines,
    bits_to_lines,
    split_version,
    versioned,
)
from coverage_wrapper.datawriter import lines_to_bits
from coverage_wrapper.s3_uploader import ABSENT
from coverage_wrapper.sources import MAX_SOURCE_BYTES  # the runtime uploads none larger
from lambdacov.aws import translating
from lambdacov.errors import AwsError

#: A version's source text from its snapshot, by sha256; None when there is none.
SnapshotSource = Callable[[str], bytes | None]


class S3Snapshots:
    """Source snapshots in the bucket, ``<prefix>sources/<sha256>``, each read once.

    A snapshot is used only if its bytes have the sha256 its key names: a
    snapshot is what the runtime uploaded, or nothing.
    """

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._found: dict[str, bytes | None] = {}

    def __call__(self, digest: str) -> bytes | None:
        if digest not in self._found:
            self._found[digest] = self._fetch(digest)
        return self._found[digest]

    def _fetch(self, digest: str) -> bytes | None:
        key = identity.source_key(self.prefix, digest)
        try:
            with translating("s3:GetObject", f"s3://{self.bucket}/{key}"):
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                body: bytes = response["Body"].read(MAX_SOURCE_BYTES + 1)
        except AwsError as error:
            if error.slug in ABSENT:  # no snapshot, rather than a fault
                return None
            raise
        if len(body) > MAX_SOURCE_BYTES or hashlib.sha256(body).hexdigest() != digest:
            return None
        return body


@dataclass(frozen=True)
class ChangedFile:
    """A file with data recorded on code other than the local file's."""

    path: str
    local: str  # the local file's sha256
    versions: Mapping[str, int]  # sha256 of each other version -> objects that recorded it
    shown_objects: int  # objects recorded on the local version
    carried: bool = False  # --carry-forward: unchanged lines of other versions carried
    carried_lines: int = 0  # lines of other versions carried onto the local file
    no_snapshot: tuple[str, ...] = ()  # versions not carried: their snapshot is unavailable

    @property
    def objects(self) -> int:
        """Objects whose data on this file is not shown as recorded."""
        return sum(self.versions.values())

    @property
    def left_out(self) -> int:
        """Objects whose data on this file is not shown at all."""
        versions = self.no_snapshot if self.carried else self.versions
        return sum(self.versions[digest] for digest in versions)


@dataclass
class Resolution:
    """The combined data with one version per file, and the files that had others."""

    combined: Combined
    changed: list[ChangedFile] = field(default_factory=list)
    # Files absent locally, reported from a snapshot: Lambda path -> the snapshot's copy.
    from_snapshots: dict[str, str] = field(default_factory=dict)


class SnapshotTree:
    """Writes snapshots as files, ``ROOT/<sha256[:16]>/<path under /var/task>``, for reports.

    Content-addressed, so runs share them; a copy is (re)written atomically
    from bytes whose sha256 was checked, and never outside ``root``.
    """

    def __init__(self, root: Path, snapshot: SnapshotSource) -> None:
        self.root = root
        self.snapshot = snapshot

    def __call__(self, path: str, digest: str) -> str | None:
        """The copy of ``path`` as its version ``digest``; None when there can be none (no
        snapshot, a path that is not a file under the task root, or no room for it)."""
        relative = posixpath.normpath(path.removeprefix(LAMBDA_TASK_ROOT + "/"))
        if not path.startswith(LAMBDA_TASK_ROOT + "/") or relative.startswith(("/", "..")):
            return None
        target = self.root / digest[:16] / relative
        try:
            if identity.file_digest(target) == digest and self._inside(target):
                return str(target)
            content = self.snapshot(digest)
            if content is None:
                return None
            target.parent.mkdir(parents=True, exist_ok=True)
            if not self._inside(target):  # a link in the cache leading elsewhere
                return None
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temporary.write_bytes(content)
            temporary.replace(target)
        except OSError:  # a file where a folder must be ("lib.py" and "lib.py/x.py"), no room
            return None
        return str(target)

    def _inside(self, target: Path) -> bool:
        """True if ``target``'s folder, links resolved, is within the tree's root."""
        folder = Path(os.path.realpath(target.parent))
        return folder.is_relative_to(os.path.realpath(self.root))


Materializer = Callable[[str, str], str | None]  # (Lambda path, sha256) -> a local copy


def resolve(
    combined: Combined,
    *,
    snapshot: SnapshotSource | None = None,
    materialize: Materializer | None = None,
) -> Resolution:
    """One version per file: the local one (or, for a file absent locally, the newest
    version's snapshot through ``materialize``); others left out or, with ``snapshot``,
    carried."""
    by_path: dict[str, set[str]] = {}
    for name in combined.objects:
        path, digest = split_version(name)
        if digest is not None:
            by_path.setdefault(path, set()).add(digest)
    if not by_path:
        return Resolution(combined)
    return _Resolver(combined, by_path, snapshot, materialize).run()


class _Resolver:
    def __init__(
        self,
        combined: Combined,
        by_path: Mapping[str, set[str]],
        snapshot: SnapshotSource | None,
        materialize: Materializer | None,
    ) -> None:
        self.combined = combined
        self.by_path = by_path
        self.snapshot = snapshot
        self.local = {path: identity.file_digest(path) for path in by_path}
        self.copies: dict[str, str] = {}  # Lambda path -> the snapshot's copy it is shown as
        if materialize is not None:
            for path, digests in by_path.items():
                if self.local[path] is None:
                    newest = max(digests, key=lambda digest: self._age(path, digest))
                    if (copy := materialize(path, newest)) is not None:
                        self.local[path] = newest
                        self.copies[path] = copy
        self.maps: dict[tuple[str, str], dict[int, int] | None] = {}
        self.shown: dict[str, set[int]] = {}  # per file, the lines recorded on the local version

    def _age(self, path: str, digest: str) -> tuple[str, int, str]:
        """What makes a version the newest: its newest object's date, then its objects."""
        name = versioned(path, digest)
        return self.combined.newest.get(name, ""), self.combined.objects.get(name, 0), digest

    def _shown_as(self, path: str) -> str:
        return self.copies.get(path, path)

    def run(self) -> Resolution:
        lines: dict[tuple[str, str], int] = {}
        arcs: dict[tuple[str, str], set[Arc]] = {}
        for (name, context), bits in self.combined.lines.items():
            path, digest = split_version(name)
            slot = (self._shown_as(path), context)
            if self._shown(path, digest):
                lines[slot] = lines.get(slot, 0) | bits
                self.shown.setdefault(path, set()).update(bits_to_lines(bits))
            else:  # listed in the report with what ran on the local version, if anything
                mapping = self._line_map(path, digest) or {}
                moved = [mapping[line] for line in bits_to_lines(bits) if line in mapping]
                lines[slot] = lines.get(slot, 0) | lines_to_bits(moved)
        for (name, context), found in self.combined.arcs.items():
            path, digest = split_version(name)
            slot = (self._shown_as(path), context)
            if self._shown(path, digest):
                arcs.setdefault(slot, set()).update(found)
                self.shown.setdefault(path, set()).update(arc_lines(found))
            else:
                mapping = self._line_map(path, digest) or {}
                arcs.setdefault(slot, set()).update(_moved_arcs(found, mapping))
        tracers = self.combined.tracers.items()
        result = self.combined.replace(
            lines=lines,
            arcs={slot: frozenset(found) for slot, found in arcs.items()},
            tracers={self._shown_as(split_version(name)[0]): tracer for name, tracer in tracers},
            objects={},
            newest={},
        )
        return Resolution(result, self._changed(result), dict(self.copies))

    def _shown(self, path: str, digest: str | None) -> bool:
        """True for data shown as recorded: the local version, no identity, or no local file."""
        here = self.local.get(path)
        return digest is None or here is None or digest == here

    def _line_map(self, path: str, digest: str | None) -> dict[int, int] | None:
        """Old line -> local line over the lines two versions share; None: not carried."""
        if self.snapshot is None or digest is None:
            return None
        if (path, digest) not in self.maps:
            shown = Path(self._shown_as(path))
            self.maps[path, digest] = _line_map(self.snapshot(digest), shown)
        return self.maps[path, digest]

    def _changed(self, result: Combined) -> list[ChangedFile]:
        objects = self.combined.objects
        changed = []
        for path, digests in sorted(self.by_path.items()):
            here = self.local[path]
            others = sorted(digests - {here})
            if here is None or not others:
                continue
            carried = result.executed_lines(self._shown_as(path)) - self.shown.get(path, set())
            changed.append(
                ChangedFile(
                    path=self._shown_as(path),
                    local=here,
                    versions={d: objects.get(versioned(path, d), 0) for d in others},
                    shown_objects=objects.get(versioned(path, here), 0),
                    carried=self.snapshot is not None,
                    carried_lines=len(carried),
                    no_snapshot=tuple(
                        d for d in others if self.snapshot and self.maps.get((path, d)) is None
                    ),
                )
            )
        return changed


def _line_map(old: bytes | None, path: Path) -> dict[int, int] | None:
    """Old line -> local line, for the lines in the equal blocks of a line diff."""
    if old is None:
        return None
    try:
        new = path.read_bytes()
    except OSError:
        return None
    matcher = difflib.SequenceMatcher(None, _lines(old), _lines(new), autojunk=False)
    mapping: dict[int, int] = {}
    for start_old, start_new, size in matcher.get_matching_blocks():
        for offset in range(size):
            mapping[start_old + offset + 1] = start_new + offset + 1
    return mapping


def _lines(source: bytes) -> list[bytes]:
    """A source's lines as Python numbers them (any of \\n, \\r\\n, \\r ends one)."""
    return source.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")


def _moved_arcs(arcs: Iterable[Arc], mapping: Mapping[int, int]) -> set[Arc]:
    """Arcs whose both ends are shared lines, renumbered; negative ends (entries and
    exits of the code object starting at that line) keep their sign, and a module's
    (-1) stays -1."""
    moved = set()
    for start, end in arcs:
        new_start = _moved(start, mapping)
        new_end = _moved(end, mapping)
        if new_start is not None and new_end is not None:
            moved.add((new_start, new_end))
    return moved


def _moved(number: int, mapping: Mapping[int, int]) -> int | None:
    if number == -1:
        # A module's entry and exit: its code always starts at line 1, whatever moved.
        return -1
    target = mapping.get(abs(number))
    if target is None:
        return None
    return -target if number < 0 else target
