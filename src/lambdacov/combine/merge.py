"""``lambdacov combine``'s core: objects in S3 -> one combined, remapped coverage data set.

The merge is the runtime's engine (:mod:`coverage_wrapper.datafiles`),
so the combiner Lambda and the CLI agree. Around it this module adds what a
developer's machine needs:

- coverage.py's ``[paths]`` remapping (:class:`coverage.files.PathAliases`)
  of the Lambda task root ``/var/task`` onto ``--source-root``;
- dropping what is not the function's code: Lambda's runtime, the layer
  (``/opt``), installed packages, and any path that would land outside the
  source root once remapped (``..``, other absolute paths);
- one coverage context per function, so the HTML report shows which function
  ran each line;
- merging objects as they arrive from the downloader.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coverage_wrapper import identity
from coverage_wrapper.datafiles import (
    LAMBDA_TASK_ROOT,
    Combined,
    DataFile,
    Merger,
    function_context,
    function_of,
    key_day,
    read_data_file,
)
from coverage_wrapper.datawriter import InvalidDataFileError
from lambdacov.aws import translating
from lambdacov.combine.collect import (
    DOWNLOAD_WORKERS,
    LIST_WORKERS,
    Downloader,
    Fetched,
    Lister,
    ObjectCache,
    Skipped,
    in_flight,
    normalise_prefix,
)
from lambdacov.combine.versions import (
    ChangedFile,
    S3Snapshots,
    SnapshotSource,
    SnapshotTree,
    resolve,
)

#: Where Lambda puts the function's code, also for container images; a file recorded
#: under another task root (the local emulator's) is read as if it ran here.
TASK_ROOT = LAMBDA_TASK_ROOT + "/"
# Lambda's runtime, its Python, the layer: never the function's own code.
RUNTIME_PREFIXES = ("/opt/", "/var/runtime/", "/var/lang/", "/usr/lib/python", "/usr/local/lib/")
RUNTIME_PARTS = ("/site-packages/", "/dist-packages/", "/coverage_wrapper/")

Progress = Callable[[str, int, int], None]  # (phase, done, total)


def is_runtime_path(path: str) -> bool:
    """True for files of Lambda's runtime, the layer or installed packages."""
    return path.startswith(RUNTIME_PREFIXES) or any(part in path for part in RUNTIME_PARTS)


class PathRemapper:
    """Maps measured paths onto the source root, as coverage's ``[paths]`` does.

    Called once per distinct measured path. It returns the local path, the
    Lambda path unchanged when the file is not in the source root (kept in the
    data, listed as missing), or None to drop the path (runtime and layer
    files, anything that would resolve outside the source root).
    """

    def __init__(self, source_root: Path) -> None:
        from coverage.files import PathAliases

        self.root = Path(os.path.realpath(source_root))
        self._aliases = PathAliases(relative=False)
        self._aliases.add(TASK_ROOT, str(self.root) + os.sep)
        self.missing: set[str] = set()
        self.outside: set[str] = set()
        self.runtime: set[str] = set()

    def inside(self, path: str) -> bool:
        """True if ``path`` (symlinks resolved) is within the source root."""
        return Path(os.path.realpath(path)).is_relative_to(self.root)

    def __call__(self, path: str) -> str | None:
        if is_runtime_path(path):
            self.runtime.add(path)
            return None
        mapped = self._aliases.map(path)
        if mapped == path and path.startswith(TASK_ROOT):
            # Not in the local checkout. Keep it (nothing is silently lost) unless
            # it only pretends to be under the task root ("/var/task/../etc").
            if not posixpath.normpath(path).startswith(TASK_ROOT):
                self.outside.add(path)
                return None
            self.missing.add(path)
            return path
        if not (Path(mapped).is_absolute() and self.inside(mapped) and Path(mapped).is_file()):
            self.outside.add(path)
            return None
        return mapped

    def reportable(self, path: str) -> bool:
        """True for combined paths that are real files in the source root."""
        return path not in self.missing and self.inside(path)


def _reportable(remapper: PathRemapper, copies: frozenset[str], path: str) -> bool:
    """True for combined paths that are real files in the source root, or snapshots' copies."""
    return path in copies or remapper.reportable(path)


#: Where, in the cache folder, source snapshots are written as files for reports.
SNAPSHOTS = "sources"


@dataclass(frozen=True)
class CombineRequest:
    """What to combine: the bucket, the window, the functions and where the source is."""

    bucket: str
    prefix: str = "coverage/"
    functions: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    source_root: Path = Path()
    cache_dir: Path | None = None  # None: a temporary directory for this run only
    exclude_keys: tuple[str, ...] = ()
    workers: int = DOWNLOAD_WORKERS
    # Carry lines recorded on other versions of a file onto the local one (see versions).
    carry_forward: bool = False
    # --since-deploy: each function's last update; objects of environments started
    # before it are left out.
    deployed: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class CombineResult:
    """The combined data, where it came from, and what was left out and why."""

    combined: Combined
    source_root: Path
    inputs: tuple[str, ...]  # keys combined
    skipped: tuple[Skipped, ...]
    objects_by_function: dict[str, int]
    listed: int
    list_calls: int
    downloaded: int
    cache_hits: int
    bytes_downloaded: int
    missing_files: tuple[str, ...]  # in the data, not in the source root
    outside_files: tuple[str, ...]  # dropped: would resolve outside the source root
    runtime_files: int  # dropped: Lambda's runtime, the layer, installed packages
    since: datetime | None
    until: datetime | None
    reportable: Callable[[str], bool]
    # Files with data recorded on code other than the local file's (see versions).
    changed: tuple[ChangedFile, ...] = ()
    # Files absent locally, reported from a source snapshot: Lambda path -> its copy.
    from_snapshots: Mapping[str, str] = field(default_factory=dict)
    # --since-deploy: objects left out, recorded by environments older than the deploy.
    before_deploy: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        combined: Combined,
        remapper: PathRemapper,
        request: CombineRequest,
        *,
        inputs: Iterable[str],
        skipped: Iterable[Skipped],
        objects_by_function: Mapping[str, int],
        listed: int,
        list_calls: int,
        downloaded: int,
        cache_hits: int,
        bytes_downloaded: int,
        snapshot: SnapshotSource | None = None,
        before_deploy: Iterable[str] = (),
    ) -> CombineResult:
        """A result whose remapping and window fields come from ``remapper`` and ``request``,
        with one version of each file: the local one (see :func:`versions.resolve`)."""
        materialize = None
        if snapshot is not None and request.cache_dir is not None:
            materialize = SnapshotTree(request.cache_dir / SNAPSHOTS, snapshot)
        resolution = resolve(
            combined,
            snapshot=snapshot if request.carry_forward else None,
            materialize=materialize,
        )
        copies = resolution.from_snapshots
        return cls(
            combined=resolution.combined,
            changed=tuple(resolution.changed),
            source_root=remapper.root,
            inputs=tuple(sorted(inputs)),
            skipped=tuple(skipped),
            objects_by_function=dict(sorted(objects_by_function.items())),
            listed=listed,
            list_calls=list_calls,
            downloaded=downloaded,
            cache_hits=cache_hits,
            bytes_downloaded=bytes_downloaded,
            missing_files=tuple(sorted(remapper.missing - copies.keys())),
            outside_files=tuple(sorted(remapper.outside)),
            runtime_files=len(remapper.runtime),
            since=request.since,
            until=request.until,
            reportable=functools.partial(_reportable, remapper, frozenset(copies.values())),
            from_snapshots=copies,
            before_deploy=tuple(sorted(before_deploy)),
        )


class _Accumulator:
    """Merges each object as it arrives; bad ones become Skipped entries.

    Path mapping is left to the caller (see :meth:`Merger.absorb`), so the same
    code runs in this process or in a merge process.
    """

    def __init__(self, deployed: Mapping[str, datetime] | None = None) -> None:
        self.merger = Merger()
        self.inputs: list[str] = []
        self.skipped: list[Skipped] = []
        self.functions: Counter[str] = Counter()
        # --since-deploy: each function's last update; older environments' objects stay out.
        self.deployed = deployed or {}
        self.before_deploy: list[str] = []

    def add(self, key: str, path: str) -> None:
        try:
            function = function_of(key)
            data = read_data_file(Path(path))
            if not _since(data, self.deployed.get(function)):
                self.before_deploy.append(key)
                return
            self.merger.add(data, functools.partial(function_context, function), key_day(key))
        except InvalidDataFileError as error:
            self.skipped.append(Skipped(key, str(error)))
        except OSError as error:  # the downloaded copy vanished or cannot be read
            self.skipped.append(Skipped(key, f"unreadable local copy: {error.strerror or error}"))
        else:
            self.inputs.append(key)
            self.functions[function] += 1

    def absorb(self, other: _Accumulator) -> None:
        self.merger.absorb(other.merger)
        self.inputs += other.inputs
        self.skipped += other.skipped
        self.functions.update(other.functions)
        self.before_deploy += other.before_deploy


def _since(data: DataFile, deployed: datetime | None) -> bool:
    """True unless the object's environment started before ``deployed`` (or says nothing).

    Code changes between environments, never within one: an environment that
    started after the function's last update runs its current code.
    """
    if deployed is None:
        return True
    try:
        started = datetime.fromisoformat(data.origin[identity.STARTED])
    except (KeyError, ValueError):
        return False
    if started.tzinfo is None:  # the runtime writes UTC with its offset; a bare time is UTC
        started = started.replace(tzinfo=UTC)
    return started >= deployed.replace(microsecond=0)


def _merge_worker(
    connection: Any, parent_end: Any, deployed: Mapping[str, datetime] | None = None
) -> None:
    """The merge process: (key, path) pairs in until None, then the accumulator out."""
    # The fork copied the parent's end of the pipe: closed here, the parent's death
    # (even a SIGKILL) reaches this process as EOF instead of leaving it waiting.
    parent_end.close()
    accumulator = _Accumulator(deployed)
    try:
        while (item := connection.recv()) is not None:
            for key, path in item:
                accumulator.add(key, path)
        connection.send(accumulator)
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return  # Ctrl-C, or the parent is gone: the parent reports it, not this process
    except Exception as error:  # noqa: BLE001 - the parent merges by itself instead
        with contextlib.suppress(OSError):
            connection.send(_MergeFailed(f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


@dataclass(frozen=True)
class _MergeFailed:
    """What the merge process sends instead of its result when it could not finish."""

    reason: str


# Below this many objects a merge process costs more than it saves.
MERGE_PROCESS_THRESHOLD = 64
# Objects sent to the merge process per message.
MERGE_BATCH = 16


class _MergeProcess:
    """A forked process running :func:`_merge_worker`.

    Batches of (key, path) pairs go in; the merged :class:`_Accumulator` comes
    out, or None if the process failed, so that the caller merges that share
    itself: the process is a speed-up, never a risk.
    """

    def __init__(self, process: Any, connection: Any) -> None:
        self._process = process
        self._connection = connection

    @classmethod
    def start(cls, deployed: Mapping[str, datetime] | None = None) -> _MergeProcess | None:
        """A new merge process; None without ``fork``, with other threads running
        (forking them is unsafe), or when the system has no process to give."""
        if threading.active_count() > 1:
            return None
        import multiprocessing

        if "fork" not in multiprocessing.get_all_start_methods():
            return None
        context = multiprocessing.get_context("fork")
        try:
            connection, child = context.Pipe()
            process = context.Process(
                target=_merge_worker, args=(child, connection, deployed), daemon=True
            )
            process.start()
        except OSError:
            return None
        child.close()
        return cls(process, connection)

    def send(self, batch: list[tuple[str, str]]) -> bool:
        """Hand over a batch; False if the process is gone."""
        try:
            self._connection.send(batch)
        except OSError:
            return False
        return True

    def result(self) -> _Accumulator | None:
        """End the input and wait for the merged data; None if the process failed."""
        try:
            self._connection.send(None)
            merged = self._connection.recv()
        except (OSError, EOFError):
            merged = None
        self.stop()
        return merged if isinstance(merged, _Accumulator) else None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.close()
        self._process.join(timeout=5)
        self.kill()

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class _Merging:
    """Merges objects as the downloader hands them over, in a merge process if it can.

    Merging on the main thread while the download threads run makes it wait for
    the GIL after each of the dozen system and SQLite calls per object (about
    2 ms per object instead of 0.2 ms). A forked process merges with no such
    contention, on the other core, while the transfer goes on; the main thread
    only forwards (key, path) pairs. With few objects, or where no process can
    be had (see :meth:`_MergeProcess.start`), the merge runs here.
    """

    def __init__(
        self,
        total: int,
        progress: Progress | None,
        deployed: Mapping[str, datetime] | None = None,
    ) -> None:
        self.total = total
        self.progress = progress
        self.done = 0
        self.local = _Accumulator(deployed)
        self.deployed = deployed
        self._batch: list[tuple[str, str]] = []
        self._sent: list[tuple[str, str]] = []  # to merge here if the merge process fails
        self._process = _MergeProcess.start(deployed) if total >= MERGE_PROCESS_THRESHOLD else None

    def __call__(self, item: Fetched) -> None:
        if self._process is None:
            self.local.add(item.key, str(item.path))
        else:
            # Batched: one pickle and one write per MERGE_BATCH objects.
            self._batch.append((item.key, str(item.path)))
            if len(self._batch) >= MERGE_BATCH:
                if self._process.send(self._batch):
                    self._sent += self._batch
                    self._batch = []
                else:  # the merge process is gone: merge here from now on
                    self._merge_here()
        self.done += 1
        if self.progress:
            self.progress("combine", self.done, self.total)

    def finish(self, remapper: PathRemapper) -> _Accumulator:
        """Everything merged, paths mapped once per distinct path by ``remapper``."""
        result = _Accumulator(self.deployed)
        result.merger = Merger(remapper)
        if self._process is not None:
            self._process.send(self._batch)  # if it fails, so does result()
            self._sent += self._batch
            self._batch = []
            merged = self._process.result()
            if merged is None:
                self._merge_here()
            else:
                result.absorb(merged)
                self._process = None
        result.absorb(self.local)
        return result

    def _merge_here(self) -> None:
        """The merge process failed: merge everything it was given in this process."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        for key, path in [*self._sent, *self._batch]:
            self.local.add(key, path)
        self._sent = []
        self._batch = []

    def abandon(self) -> None:
        """Stop the merge process (after an error in the download)."""
        if self._process is not None:
            self._process.kill()


def combine(
    client: Any, request: CombineRequest, progress: Progress | None = None
) -> CombineResult:
    """List, fetch and merge the request's objects; return the combined data."""
    workers = in_flight(client, request.workers)
    lister = Lister(client, request.bucket, workers=min(workers, LIST_WORKERS))
    listing = lister.list(
        request.prefix,
        since=request.since,
        until=request.until,
        functions=request.functions,
        exclude=request.exclude_keys,
    )
    if progress:
        progress("list", len(listing.objects), len(listing.objects))
    remapper = PathRemapper(request.source_root)
    merging = _Merging(len(listing.objects), progress, request.deployed)
    try:
        with tempfile.TemporaryDirectory(prefix="lambdacov-objects-") as scratch:
            cache = ObjectCache(request.cache_dir or Path(scratch))
            try:
                download = Downloader(client, request.bucket, cache, workers=workers).fetch(
                    listing.objects, merging
                )
                # Inside the with: the merge reads this run's links to the objects.
                accumulator = merging.finish(remapper)
            finally:
                cache.release()
    finally:
        merging.abandon()
    skipped = sorted([*download.skipped, *accumulator.skipped], key=lambda item: item.key)
    return CombineResult.build(
        accumulator.merger.result(),
        remapper,
        request,
        inputs=accumulator.inputs,
        skipped=skipped,
        objects_by_function=accumulator.functions,
        listed=len(listing.objects),
        list_calls=listing.list_calls,
        downloaded=download.downloaded,
        cache_hits=download.cache_hits,
        bytes_downloaded=download.bytes_downloaded,
        snapshot=S3Snapshots(client, request.bucket, normalise_prefix(request.prefix)),
        before_deploy=accumulator.before_deploy,
    )


def upload_combined(
    client: Any, bucket: str, key: str, data_file: Path, document: dict[str, Any]
) -> list[str]:
    """Write the combined data file to ``key`` and its JSON report beside it; return both keys.

    The JSON goes to ``key`` with ``.coverage`` replaced by ``.json``, so a
    later run (or a person browsing the bucket) finds the numbers next to the
    data. Both are written with SSE-S3 encryption.
    """
    json_key = key.removesuffix(".coverage") + ".json"
    with translating("s3:PutObject", f"s3://{bucket}/{key}"):
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data_file.read_bytes(),
            ServerSideEncryption="AES256",
            ContentType="application/vnd.sqlite3",
        )
        client.put_object(
            Bucket=bucket,
            Key=json_key,
            Body=json.dumps(document, indent=2).encode(),
            ServerSideEncryption="AES256",
            ContentType="application/json",
        )
    return [key, json_key]


# Below this many files a second process costs more than it saves.
PARALLEL_THRESHOLD = 400


def merge_local(
    paths: Sequence[Path], source_root: Path | None = None, *, workers: int = 1
) -> tuple[Combined, tuple[Skipped, ...]]:
    """Merge local data files named like objects (``<function>-<id>.coverage``).

    With ``source_root``, paths are remapped and filtered as in :func:`combine`.
    With ``workers`` > 1 and enough files, ``workers - 1`` forked processes
    each read a share while this process reads its own (reading is CPU-bound:
    SQLite and set building); a share whose process fails is read here.
    """
    items = [(str(path), str(path)) for path in paths]
    shares = [items]
    if workers > 1 and len(items) >= PARALLEL_THRESHOLD:
        shares = [items[index::workers] for index in range(workers)]
    processes: list[_MergeProcess | None] = []
    result = _Accumulator()
    local = _Accumulator()
    try:
        processes += [_MergeProcess.start() for _ in shares[1:]]
        result.merger = Merger(PathRemapper(source_root) if source_root else None)
        for share, process in zip(shares[1:], processes, strict=True):
            if process is not None:
                process.send(share)  # if it fails, so does result()
        for key, path in shares[0]:
            local.add(key, path)
        for share, process in zip(shares[1:], processes, strict=True):
            merged = process.result() if process is not None else None
            if merged is None:
                for key, path in share:
                    local.add(key, path)
            else:
                result.absorb(merged)
    finally:
        for process in processes:
            if process is not None:
                process.kill()
    result.absorb(local)
    return result.merger.result(), tuple(sorted(result.skipped, key=lambda item: item.key))


__all__ = [
    "CombineRequest",
    "CombineResult",
    "PathRemapper",
    "combine",
    "merge_local",
    "normalise_prefix",
    "upload_combined",
]
