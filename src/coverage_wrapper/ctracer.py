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
from typing import Any

from coverage_wrapper.monitor import Scope

# coverage.py versions whose C tracer interface (its attributes, packed arcs) this
# module was checked against, lowest and highest (major, minor).
CHECKED_VERSIONS = ((7, 10), (7, 99))

_VERSION = re.compile(r"^version_info\s*=\s*\((\d+),\s*(\d+)", re.MULTILINE)


def load_tracer_module() -> ModuleType | None:
    """coverage.py's ``coverage.tracer`` extension module, loaded without the package;
    None when coverage.py, its compiled tracer, or a checked version is not there."""
    spec = PathFinder.find_spec("coverage")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in map(Path, folders):
        try:
            found = _VERSION.search((folder / "version.py").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if found is None or not (
            CHECKED_VERSIONS[0] <= (int(found[1]), int(found[2])) <= CHECKED_VERSIONS[1]
        ):
            return None
        for suffix in EXTENSION_SUFFIXES:
            path = str(folder / f"tracer{suffix}")
            if Path(path).exists():
                loader = ExtensionFileLoader("coverage.tracer", path)
                try:
                    module = loader.create_module(ModuleSpec(loader.name, loader, origin=path))
                    loader.exec_module(module)
                except ImportError:  # built for another Python or machine: coverage.py says so
                    return None
                return module
        return None
    return None


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
        self.running = False

    def start(self) -> None:
        """Trace this thread now and every thread started from now on."""
        self._start_tracer()
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
        """Record again after :meth:`pause`."""
        if not self.running:
            for tracer in self._tracers:
                tracer.start()
            threading.settrace(self._install)
            self.running = True

    def take(self) -> Iterator[tuple[str, Iterable[Any]]]:
        """What was recorded since the last call, per file (removed from the live sets)."""
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

    def _should_trace(self, filename: str, frame: FrameType | None) -> Any:
        disposition = self._module.CFileDisposition()
        disposition.original_filename = filename
        disposition.canonical_filename = filename
        disposition.file_tracer = None
        disposition.has_dynamic_filename = False
        name = self._scope.measured_name(filename, frame)
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
