"""``lambdacov combine``'s core: objects in S3 -> one combined, remapped coverage data set.

The merge is the runtime's engine (:mod:`coverage_wrapper.combine_engine`),
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
import os
import posixpath
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from coverage_wrapper.combine_engine import (
    Combined,
    InvalidDataFileError,
    Merger,
    function_context,
    function_from_key,
    read_data_file,
)
from lambdacov.collect import (
    DOWNLOAD_WORKERS,
    Downloader,
    Fetched,
    Lister,
    ObjectCache,
    Skipped,
    normalise_prefix,
)

#: Where Lambda puts the function's code (LAMBDA_TASK_ROOT), also for container images.
TASK_ROOT = "/var/task/"
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
    ) -> CombineResult:
        """A result whose remapping and window fields come from ``remapper`` and ``request``."""
        return cls(
            combined=combined,
            source_root=remapper.root,
            inputs=tuple(sorted(inputs)),
            skipped=tuple(skipped),
            objects_by_function=dict(sorted(objects_by_function.items())),
            listed=listed,
            list_calls=list_calls,
            downloaded=downloaded,
            cache_hits=cache_hits,
            bytes_downloaded=bytes_downloaded,
            missing_files=tuple(sorted(remapper.missing)),
            outside_files=tuple(sorted(remapper.outside)),
            runtime_files=len(remapper.runtime),
            since=request.since,
            until=request.until,
            reportable=remapper.reportable,
        )


class _Accumulator:
    """Merges each object as it arrives; bad ones become Skipped entries.

    Path mapping is left to the caller (see :meth:`Merger.absorb`), so the same
    code runs in this process or in a merge process.
    """

    def __init__(self) -> None:
        self.merger = Merger()
        self.inputs: list[str] = []
        self.skipped: list[Skipped] = []
        self.functions: Counter[str] = Counter()

    def add(self, key: str, path: str) -> None:
        function = function_from_key(key)
        try:
            self.merger.add(
                read_data_file(Path(path)), functools.partial(function_context, function)
            )
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


def _merge_worker(connection: Any) -> None:
    """The merge process: (key, path) pairs in until None, then the accumulator out."""
    accumulator = _Accumulator()
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


class _Merging:
    """Merges objects as the downloader hands them over, in a merge process if it can.

    Merging on the main thread while the download threads run makes it wait for
    the GIL after each of the dozen system and SQLite calls per object (about
    2 ms per object instead of 0.2 ms). A forked process merges with no such
    contention, on the other core, while the transfer goes on; the main thread
    only forwards (key, path) pairs. Without ``fork``, with few objects, or when
    other threads are running (forking them is unsafe) the merge runs here.
    """

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.progress = progress
        self.done = 0
        self.local = _Accumulator()
        self._batch: list[tuple[str, str]] = []
        self._sent: list[tuple[str, str]] = []  # to merge here if the merge process fails
        self._process: Any = None
        self._connection: Any = None
        if total >= MERGE_PROCESS_THRESHOLD and threading.active_count() == 1:
            self._start()

    def _start(self) -> None:
        import multiprocessing

        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        try:
            self._connection, child = context.Pipe()
            self._process = context.Process(target=_merge_worker, args=(child,), daemon=True)
            self._process.start()
        except OSError:  # no processes to be had: merge here
            self._process = self._connection = None
            return
        child.close()

    def __call__(self, item: Fetched) -> None:
        if self._process is None:
            self.local.add(item.key, str(item.path))
        else:
            # Batched: one pickle and one write per MERGE_BATCH objects.
            self._batch.append((item.key, str(item.path)))
            if len(self._batch) >= MERGE_BATCH:
                try:
                    self._connection.send(self._batch)
                except OSError:  # the merge process is gone: merge here from now on
                    self._merge_here()
                else:
                    self._sent += self._batch
                    self._batch = []
        self.done += 1
        if self.progress:
            self.progress("combine", self.done, self.total)

    def finish(self, remapper: PathRemapper) -> _Accumulator:
        """Everything merged, paths mapped once per distinct path by ``remapper``."""
        result = _Accumulator()
        result.merger = Merger(remapper)
        if self._process is not None:
            try:
                if self._batch:
                    self._connection.send(self._batch)
                    self._sent += self._batch
                    self._batch = []
                self._connection.send(None)
                merged = self._connection.recv()
            except (OSError, EOFError):
                merged = _MergeFailed("the merge process stopped")
            if isinstance(merged, _MergeFailed):
                self._merge_here()
            else:
                result.absorb(merged)
                self._stop_process()
        result.absorb(self.local)
        return result

    def _merge_here(self) -> None:
        """The merge process failed: merge everything it was given in this process."""
        self._stop_process()
        for key, path in [*self._sent, *self._batch]:
            self.local.add(key, path)
        self._sent = []
        self._batch = []

    def _stop_process(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            self._connection.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = self._connection = None

    def abandon(self) -> None:
        """Stop the merge process (after an error in the download)."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join()


def combine(
    client: Any, request: CombineRequest, progress: Progress | None = None
) -> CombineResult:
    """List, fetch and merge the request's objects; return the combined data."""
    lister = Lister(client, request.bucket, workers=min(request.workers, 16))
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
    merging = _Merging(len(listing.objects), progress)
    try:
        with tempfile.TemporaryDirectory(prefix="lambdacov-objects-") as scratch:
            cache = ObjectCache(request.cache_dir or Path(scratch))
            download = Downloader(client, request.bucket, cache, workers=request.workers).fetch(
                listing.objects, merging
            )
            # Inside the with: a run without a cache directory merges from scratch.
            accumulator = merging.finish(remapper)
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
    )


def _merge_chunk(paths: Sequence[Path]) -> tuple[Merger, list[Skipped]]:
    """Merge some files with per-function contexts and no path map (a worker's share)."""
    merger = Merger()
    skipped = []
    for path in paths:
        label = functools.partial(function_context, function_from_key(path.name))
        try:
            merger.add(read_data_file(path), label)
        except InvalidDataFileError as error:
            skipped.append(Skipped(str(path), str(error)))
    return merger, skipped


# Below this many files a second process costs more than it saves.
PARALLEL_THRESHOLD = 400


def merge_local(
    paths: Sequence[Path], source_root: Path | None = None, *, workers: int = 1
) -> tuple[Combined, tuple[Skipped, ...]]:
    """Merge local data files named like objects (``<function>-<id>.coverage``).

    With ``source_root``, paths are remapped and filtered as in :func:`combine`.
    With ``workers`` > 1 and enough files, the files are read in that many
    processes (reading is CPU-bound: SQLite and set building) and reduced here.
    """
    merger = Merger(PathRemapper(source_root) if source_root else None)
    skipped: list[Skipped] = []
    if workers > 1 and len(paths) >= PARALLEL_THRESHOLD:
        # Imported here: most runs never need it, and it costs 8 ms of start-up.
        from concurrent.futures import ProcessPoolExecutor

        chunks = [list(paths[index::workers]) for index in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=_process_context()) as pool:
            for part, bad in pool.map(_merge_chunk, chunks):
                merger.absorb(part)
                skipped += bad
    else:
        part, skipped = _merge_chunk(paths)
        merger.absorb(part)
    return merger.result(), tuple(sorted(skipped, key=lambda item: item.key))


def _process_context() -> Any:
    import multiprocessing

    # fork: the workers inherit the imported modules, so they start in milliseconds.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


__all__ = [
    "CombineRequest",
    "CombineResult",
    "PathRemapper",
    "combine",
    "merge_local",
    "normalise_prefix",
]
