"""The coverage engine: one ``coverage.Coverage`` per process, and cheap checkpoints.

Coverage runs from the moment the engine starts to the end of the process; it
is never stopped and restarted between invocations (that costs milliseconds,
and with the sys.monitoring core it would re-enable events already disabled).
At the end of an invocation, :meth:`Recorder.checkpoint` takes what the tracer
collected since the previous checkpoint and returns only what is new to this
process: after the first few invocations that is usually nothing, so nothing
needs writing or uploading.

Reading the collector directly keeps a checkpoint in the tens of microseconds.
Its layout is coverage.py's internals, so it is used only for the versions it
was checked against; any other version goes through the public
``Coverage.get_data()`` API instead, with the same results, more slowly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from coverage_wrapper.ctracer import TraceMonitor, load_tracer_module, unpack_arcs
from coverage_wrapper.errors import CoverageInitializationError
from coverage_wrapper.models import CoverageConfig
from coverage_wrapper.monitor import LineMonitor

if TYPE_CHECKING:
    import coverage

Kind = Literal["lines", "arcs"]
Measured = dict[str, set[Any]]  # file -> line numbers, or (from, to) arcs

# coverage.py versions whose collector layout (Collector.data: file -> set,
# packed arcs for the C tracer) the fast path was checked against.
_FAST_PATH_VERSIONS = ((7, 10), (7, 99))


class Delta(NamedTuple):
    """What one checkpoint found that this process had not recorded before.

    A named tuple, not a dataclass: the runtime imports this as it starts, and
    ``dataclasses`` (with ``inspect`` under it) costs the cold start milliseconds.
    """

    kind: Kind
    files: Measured

    def __bool__(self) -> bool:
        return any(self.files.values())

    def merge(self, other: Delta) -> None:
        """Add ``other``'s lines or arcs to this delta."""
        for name, items in other.files.items():
            self.files.setdefault(name, set()).update(items)


def _layer_roots() -> list[str]:
    """Directories whose files must never be measured: the layer and the runtime."""
    here = Path(__file__).resolve().parent
    roots = {str(here.parent), str(Path(sys.prefix)), str(Path(sys.base_prefix))}
    for name in ("LAMBDA_RUNTIME_DIR",):
        if os.environ.get(name):
            roots.add(os.environ[name])
    return sorted(roots)


def _vendored_packages(task_root: Path) -> list[str]:
    """Top-level names of the packages installed into the task root (``pip install -t``).

    Lambda bundles usually vendor their dependencies next to the handler; they
    are third-party code, not the function's, so they are not measured.
    """
    names: set[str] = set()
    try:
        entries = list(task_root.glob("*.dist-info"))
    except OSError:
        return []
    for info in entries:
        try:
            record = (info / "RECORD").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in record.splitlines():
            top = line.split(",", 1)[0].split("/", 1)[0]
            if top and not top.endswith((".dist-info", ".data")) and top != "..":
                names.add(top.removesuffix(".py"))
    return sorted(names)


def measurement_scope(config: CoverageConfig, task_root: Path) -> tuple[list[str], list[str]]:
    """Return coverage's (include, omit) patterns for the function's code.

    Without COVERAGE_INCLUDE_PATTERNS the function's own code is everything
    under the task root; relative patterns are relative to the task root, as a
    user writing ``src/*`` means.
    """
    root = str(task_root)
    include = [
        pattern if pattern.startswith(("/", "*")) else f"{root}/{pattern}"
        for pattern in config.include_patterns
    ] or [f"{root}/*"]
    omit = [
        pattern if pattern.startswith(("/", "*")) else f"{root}/{pattern}"
        for pattern in config.exclude_patterns
    ]
    omit += [f"{path}/*" for path in _layer_roots()]
    for name in _vendored_packages(task_root):
        omit += [f"{root}/{name}/*", f"{root}/{name}.py"]
    return include, omit


class Recorder:
    """Owns the process's ``coverage.Coverage`` and turns its data into deltas."""

    def __init__(self, config: CoverageConfig, task_root: Path) -> None:
        self.config = config
        self.task_root = task_root
        self.kind: Kind = "arcs" if config.branch else "lines"
        self._cov: coverage.Coverage | None = None
        self._monitor: LineMonitor | TraceMonitor | None = None
        self._seen: Measured = {}
        self._fast = False
        self._paused = False

    @property
    def started(self) -> bool:
        """True once coverage is measuring this process."""
        return self._cov is not None or self._monitor is not None

    @property
    def core(self) -> str:
        """The core in use: ``lambdacov-sysmon`` (:mod:`coverage_wrapper.monitor`),
        ``lambdacov-ctrace`` (:mod:`coverage_wrapper.ctracer`), or coverage.py's
        ``sysmon``, ``ctrace`` or ``pytrace``."""
        if isinstance(self._monitor, LineMonitor):
            return "lambdacov-sysmon"
        if self._monitor is not None:
            return "lambdacov-ctrace"
        if self._cov is None:
            return "none"
        collector = getattr(self._cov, "_collector", None)
        tracer = getattr(collector, "_trace_class", None) or getattr(
            getattr(collector, "core", None), "tracer_class", None
        )
        name = getattr(tracer, "__name__", "")
        return {"SysMonitor": "sysmon", "CTracer": "ctrace", "PyTracer": "pytrace"}.get(
            name, name or "unknown"
        )

    def start(self) -> None:
        """Start measuring; raise CoverageInitializationError if coverage cannot start.

        No coverage.py is imported into this process where the layer can record
        what coverage.py would with the same events at a fraction of the start-up
        time and memory: line coverage on 3.12+ with ``sys.monitoring``
        (:class:`LineMonitor`), and where coverage.py would use its C tracer (3.11,
        branch coverage before 3.14) with that tracer alone (:class:`TraceMonitor`).
        A ``COVERAGE_CORE`` set by the user goes through coverage.py.
        """
        if self.started:
            return
        include, omit = measurement_scope(self.config, self.task_root)
        try:
            if _monitor_applies(self.config):
                monitor = LineMonitor(include, omit)
                try:
                    monitor.start()
                except ValueError:  # the tool id is taken (coverage.py runs the process)
                    pass
                else:
                    self._monitor = monitor
                    return
            elif _tracer_applies(self.config) and (module := load_tracer_module()):
                tracer = TraceMonitor(include, omit, arcs=self.config.branch, module=module)
                if self._started(tracer):
                    return
        except ValueError as error:  # a pattern coverage.py would refuse too
            raise CoverageInitializationError(
                f"COVERAGE_INCLUDE_PATTERNS or COVERAGE_EXCLUDE_PATTERNS: {error}"
            ) from error
        self._start_coverage(include, omit)

    def _started(self, tracer: TraceMonitor) -> bool:
        """Start ``tracer``; False when the C tracer would not start (coverage.py then does)."""
        try:
            tracer.start()
        except Exception:  # noqa: BLE001 - a tracer unlike the ones checked: coverage.py's way
            return False
        self._monitor = tracer
        return True

    def _start_coverage(self, include: list[str], omit: list[str]) -> None:
        try:
            import coverage
        except ImportError as error:
            raise CoverageInitializationError(
                f"coverage.py is not importable ({error}); is the lambdacov layer attached?"
            ) from error
        try:
            cov = coverage.Coverage(
                data_file=None,  # in memory: the task root is read-only in Lambda
                branch=self.config.branch,
                include=include,
                omit=omit,
                config_file=False,
            )
            if not os.environ.get("COVERAGE_CORE") and sys.version_info >= (3, 12):
                # sys.monitoring costs almost nothing per line once a line has been
                # seen; before 3.14 it cannot measure branches, so leave those to ctrace.
                if not self.config.branch:
                    cov.set_option("run:core", "sysmon")
            cov.start()
        except Exception as error:
            raise CoverageInitializationError(f"{type(error).__name__}: {error}") from error
        self._cov = cov
        self._fast = self._fast_path_available(cov)

    @staticmethod
    def _fast_path_available(cov: coverage.Coverage) -> bool:
        import coverage

        low, high = _FAST_PATH_VERSIONS
        collector = getattr(cov, "_collector", None)
        return (
            low <= coverage.version_info[:2] <= high
            and isinstance(getattr(collector, "data", None), dict)
            and hasattr(getattr(collector, "core", None), "packed_arcs")
        )

    def pause(self) -> None:
        """Stop tracing until :meth:`resume` (selective coverage with CoverageContext)."""
        if self._monitor is not None:
            self._monitor.pause()
        elif self._cov is not None and not self._paused:
            self._cov.stop()
            self._paused = True

    def resume(self) -> None:
        """Trace again after :meth:`pause`."""
        if self._monitor is not None:
            self._monitor.resume()
        elif self._cov is not None and self._paused:
            self._cov.start()
            self._paused = False

    def checkpoint(self) -> Delta:
        """Return the lines (or arcs) recorded since the last checkpoint that are new."""
        delta = Delta(self.kind, {})
        if self._monitor is not None:
            raw: Iterable[tuple[str, Iterable[Any]]] = self._monitor.take()
        elif self._cov is None:
            return delta
        else:
            raw = self._collect_fast() if self._fast else self._collect_public()
        for name, items in raw:
            seen = self._seen.get(name)
            if seen is None:
                fresh = set(items)
                self._seen[name] = set(fresh)
            else:
                fresh = set(items) - seen
                seen |= fresh
            if fresh:
                delta.files[name] = fresh
        return delta

    def _collect_fast(self) -> Iterable[tuple[str, Iterable[Any]]]:
        assert self._cov is not None
        collector: Any = self._cov._collector
        packed = self.kind == "arcs" and collector.core.packed_arcs
        for name, live in list(collector.data.items()):
            if not live:
                continue
            # Copy, then remove exactly the copied items, as Collector.flush_data
            # does: the tracer keeps adding to the same set objects.
            snapshot = live.copy()
            live.difference_update(snapshot)
            yield name, (unpack_arcs(snapshot) if packed else snapshot)

    def _collect_public(self) -> Iterable[tuple[str, Iterable[Any]]]:
        assert self._cov is not None
        data = self._cov.get_data()
        for name in data.measured_files():
            items = data.arcs(name) if self.kind == "arcs" else data.lines(name)
            if items:
                yield name, items

    def measured_files(self) -> int:
        """How many files have recorded at least one line in this process."""
        return len(self._seen)


def _monitor_applies(config: CoverageConfig) -> bool:
    """True where :class:`LineMonitor` records what coverage.py's sysmon core would."""
    return sys.version_info >= (3, 12) and not config.branch and not os.environ.get("COVERAGE_CORE")


def _tracer_applies(config: CoverageConfig) -> bool:
    """True where coverage.py would measure with its C tracer: :class:`TraceMonitor`.

    Not when something traces this thread already (coverage.py measuring the process, a
    debugger): coverage.py itself then starts, and stacks on it as it does.
    """
    return (
        (sys.version_info < (3, 12) or (config.branch and sys.version_info < (3, 14)))
        and not os.environ.get("COVERAGE_CORE")
        and sys.gettrace() is None
    )
