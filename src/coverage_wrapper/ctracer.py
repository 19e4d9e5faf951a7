"""Coverage with coverage.py's C tracer alone, without the rest of coverage.py.

Where ``sys.monitoring`` does not serve (Python 3.11, and branch coverage before
3.14), coverage.py measures with its C tracer, ``coverage.tracer.CTracer``. Importing
the ``coverage`` package to get it costs a 3.11 cold start about 100 ms and 15 MB
(``Coverage`` imports its reporters, reads configuration, builds matchers); the
tracer module alone loads in about a millisecond. This module loads just that
extension module from the coverage.py the layer ships and drives it as coverage.py's
``Collector`` does:

- one ``CTracer`` per thread, all adding to one ``data`` dictionary; threads started
  later get theirs from ``threading.settrace``, as coverage.py's own do;
- the tracer asks :meth:`TraceMonitor._should_trace` once per code file name, which
  answers with coverage.py's decision (:class:`coverage_wrapper.monitor.Scope`);
- arcs come out of the tracer packed into integers and are unpacked here.

The tracer's attributes are coverage.py's internals, so only the coverage.py versions
this was checked against are driven directly (:data:`CHECKED_VERSIONS`); with any other
the recorder starts coverage.py itself. The tests hold the data to ``coverage run``.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable, Iterator
from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader, ModuleSpec, PathFinder
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, cast

from coverage_wrapper.monitor import Scope, Undecided

# coverage.py versions whose C tracer interface (its attributes, packed arcs) this
# module was checked against, lowest and highest (major, minor).
CHECKED_VERSIONS = ((7, 10), (7, 99))

_NAME = "coverage.tracer"
_handed: _Handover | None = None  # the module loaded here, once
_VERSION = re.compile(r"^version_info\s*=\s*\((\d+),\s*(\d+)", re.MULTILINE)


def load_tracer_module() -> ModuleType | None:
    """coverage.py's ``coverage.tracer`` extension module, loaded without the package;
    None when coverage.py, its compiled tracer, or a checked version is not there.

    The module can be set up once per process (coverage.py's C code registers its types
    once): loaded again, it would be empty. So the one already loaded is used, and a later
    ``import coverage`` (the function's own, or the recorder's fallback) is handed the one
    loaded here (:class:`_Handover`).
    """
    if _handed is not None:
        return _handed.module
    loaded = sys.modules.get(_NAME)
    if loaded is not None:
        package = sys.modules.get("coverage")
        version = getattr(package, "version_info", (0, 0))[:2]
        return loaded if _usable(loaded) and _checked(version) else None
    spec = PathFinder.find_spec("coverage")
    for folder in map(Path, (spec.submodule_search_locations or []) if spec else []):
        try:
            found = _VERSION.search((folder / "version.py").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if found is None or not _checked((int(found[1]), int(found[2]))):
            return None
        return _load_from(folder)
    return None


def _load_from(folder: Path) -> ModuleType | None:
    """The tracer module in coverage.py's ``folder``, handed to later imports of it."""
    for suffix in EXTENSION_SUFFIXES:
        candidate = folder / f"tracer{suffix}"
        if candidate.exists():
            path = str(candidate)
            loader = ExtensionFileLoader(_NAME, path)
            spec = ModuleSpec(_NAME, loader, origin=path)
            try:
                module = loader.create_module(spec)
                loader.exec_module(module)
            except ImportError:  # built for another Python or machine: coverage.py says so
                return None
            if not _usable(module):
                return None
            module.__file__, module.__spec__, module.__loader__ = path, spec, loader
            global _handed  # noqa: PLW0603 - one per process, as the module itself
            _handed = _Handover(module, folder)
            sys.meta_path.insert(0, _handed)
            return module
    return None


class _Handover:
    """Finds ``coverage.tracer`` for the import system: the module this process loaded.

    Imported through it, the module is bound to its package as any submodule is (coverage.py
    reads ``coverage.tracer.__file__``). Only for the coverage.py it came from: another
    coverage.py (the function's own) has a tracer of its own.
    """

    def __init__(self, module: ModuleType, folder: Path) -> None:
        self.module = module
        self.folder = folder.resolve()  # the same folder however a path names it

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name != _NAME or name in sys.modules:
            return None
        if not any(self._names_the_folder(entry) for entry in path or []):
            return None
        # A loader by what it does (create_module, exec_module): importlib.abc costs imports.
        return ModuleSpec(name, cast(Any, self), origin=self.module.__file__)

    def _names_the_folder(self, entry: Any) -> bool:
        try:
            return Path(entry).resolve() == self.folder
        except (OSError, RuntimeError, TypeError, ValueError):  # a loop, a NUL: not it
            return False

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was set up when it was loaded."""


def _checked(version: tuple[int, ...]) -> bool:
    return CHECKED_VERSIONS[0] <= tuple(version) <= CHECKED_VERSIONS[1]


def _usable(module: ModuleType) -> bool:
    return hasattr(module, "CTracer") and hasattr(module, "CFileDisposition")


class TraceMonitor:
    """Records the lines (or arcs) of the measured files with coverage.py's C tracer."""

    def __init__(
        self, include: Iterable[str], omit: Iterable[str], *, arcs: bool, module: ModuleType
    ) -> None:
        self._scope = Scope(include, omit)
        self._arcs = arcs
        self._module = module
        # Canonical file name -> its lines, or its arcs packed as the tracer packs them.
        self.data: dict[str, set[int]] = {}
        # A code object's file name -> its disposition; the tracer reads and fills it.
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._tracers: list[Any] = []
        self._undecided: set[str] = set()
        self.running = False

    def start(self) -> None:
        """Trace this thread now and every thread started from now on; if the tracer will
        not start, leave nothing of it behind and raise."""
        try:
            self._start_tracer()
        except BaseException:
            for tracer in self._tracers:
                tracer.stop()
            self._tracers = []
            raise
        threading.settrace(self._install)
        self.running = True

    def pause(self) -> None:
        """Stop recording until :meth:`resume`."""
        if self.running:
            for tracer in self._tracers:
                tracer.stop()
            threading.settrace(None)
            self.running = False

    def resume(self) -> None:
        """Record again after :meth:`pause`: with new tracers, as ``Coverage.start`` does.

        A stopped tracer keeps the frames it was in when it stopped, and starting one
        installs it on the calling thread whichever thread it was made for: restarting
        the old ones would credit lines to the wrong files.
        """
        if not self.running:
            self._tracers = []
            self.start()

    def take(self) -> Iterator[tuple[str, Iterable[Any]]]:
        """What was recorded since the last call, per file (removed from the live sets)."""
        self._retry()
        for name, live in list(self.data.items()):
            if live:
                # Copy, then remove exactly what was copied: the tracers keep adding.
                snapshot = live.copy()
                live.difference_update(snapshot)
                yield name, (unpack_arcs(snapshot) if self._arcs else snapshot)

    def _start_tracer(self) -> Any:
        tracer = self._module.CTracer()
        tracer.data = self.data
        tracer.lock_data = self._lock.acquire
        tracer.unlock_data = self._lock.release
        tracer.trace_arcs = self._arcs
        tracer.should_trace = self._should_trace
        tracer.should_trace_cache = self._cache
        tracer.warn = _ignore
        # Every attribute is set, as coverage.py sets them: the tracer reads some of
        # them unchecked, and one left unset crashes the process.
        tracer.concur_id_func = None
        tracer.file_tracers = {}
        tracer.check_include = None
        tracer.should_start_context = None
        tracer.switch_context = None
        tracer.disable_plugin = None
        trace = tracer.start()
        self._tracers.append(tracer)
        return trace

    def _install(self, frame: FrameType, event: str, arg: Any) -> Any:
        """A new thread's first trace call: give the thread its own tracer."""
        sys.settrace(None)
        trace = self._start_tracer()
        return trace(frame, event, arg) if trace else None

    def _retry(self, frame: FrameType | None = None) -> None:
        """Drop the undecided files' answers from the tracers' cache; the hook goes once
        all are dropped (an answer not stored yet, by another thread, waits for the next)."""
        for name in list(self._undecided):
            if self._cache.pop(name, None) is not None:
                self._undecided.discard(name)
        if not self._undecided:
            for tracer in self._tracers:
                tracer.should_start_context = None

    def _should_trace(self, filename: str, frame: FrameType | None) -> Any:
        disposition = self._module.CFileDisposition()
        disposition.original_filename = filename
        disposition.canonical_filename = filename
        disposition.file_tracer = None
        disposition.has_dynamic_filename = False
        try:
            name = self._scope.measured_name(filename, frame)
        except Undecided:
            # The tracer keeps every answer in its cache: this one is taken out of it at
            # the tracers' next call (through their context hook, unused otherwise), and
            # the file decided again when it runs again.
            self._undecided.add(filename)
            for tracer in self._tracers:
                tracer.should_start_context = self._retry
            name = None
        disposition.source_filename = name
        disposition.trace = name is not None
        disposition.reason = "" if name is not None else "not measured"
        return disposition


def _ignore(*_args: Any, **_kwargs: Any) -> None:
    """The tracers' warnings: about plug-ins and dynamic contexts, which are not used."""


def unpack_arcs(packed: Iterable[int]) -> list[tuple[int, int]]:
    """Decode the C tracer's packed arcs (coverage/ctracer/tracer.c: CTracer_record_pair)."""
    arcs = []
    for value in packed:
        first = value & 0xFFFFFFF
        second = (value >> 28) & 0xFFFFFFF
        if value & (1 << 56):
            first = -first
        if value & (1 << 57):
            second = -second
        arcs.append((first, second))
    return arcs
