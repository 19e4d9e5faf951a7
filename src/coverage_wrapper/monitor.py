"""Line coverage with ``sys.monitoring`` alone (Python 3.12+), without coverage.py.

Importing coverage.py and starting it costs every cold start about 80 ms and
15 MB (its ``Coverage`` class imports every reporter, reads configuration,
builds its file matchers). For line coverage on 3.12+, what coverage.py then
does is small: its ``sys.monitoring`` core decides once per file whether to
measure it, turns on LINE events for the code objects of measured files, and
adds each line number to the file's set the first time it runs (then disables
that event, so a line costs nothing afterwards). This module does the same,
with the same decision and the same events, so the data is the same:

- a file is measured when its canonical name (symlinks resolved, absolute;
  ``.pyc`` names read as their ``.py``; a module's ``__file__`` preferred to
  the code's file name, as coverage.py does) matches an include pattern and no
  omit pattern, with coverage.py's glob rules (:func:`glob_regex`);
- names that are not files (``<string>``, ``memory:``...) never are.

Python 3.11 and branch coverage use coverage.py's C tracer alone
(:mod:`coverage_wrapper.ctracer`, with the same :class:`Scope`); a ``COVERAGE_CORE``
chosen by the user goes through coverage.py (:class:`coverage_wrapper.recorder.Recorder`).
The tests hold this module to coverage.py: the same patterns match the same paths,
and functions run under both give the same lines.
"""

# ruff: noqa: PTH100, PTH110, PTH117, PTH118, PTH119 - coverage.py's rules on path strings

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from types import CodeType, FrameType
from typing import Any

# Python 3.12+ (the recorder uses this module only there).
_monitoring: Any = getattr(sys, "monitoring", None)
# coverage.py's own tool id: the two never measure one process at once.
TOOL_ID = 1
TOOL_NAME = "lambdacov"

# coverage.py's file-pattern rules, token by token (its documentation, "File patterns"):
# "**/" any directories or none, a trailing "/*" anything below, "*" and "?" within one
# path part, "[...]" a character class; a pattern with no slash matches a file name
# in any directory. Each entry: a token, and its regex (None: not a valid pattern).
_TOKENS: tuple[tuple[re.Pattern[str], str | None], ...] = tuple(
    (re.compile(token), replacement)
    for token, replacement in (
        (r"\*\*\*+", None),
        (r"[^/]+\*\*+", None),
        (r"\*\*+[^/]+", None),
        (r"\*\*/\*\*", None),
        (r"^\*+/", r"(.*[/\\\\])?"),
        (r"/\*+$", r"[/\\\\].*"),
        (r"\*\*/", r"(.*[/\\\\])?"),
        (r"/", r"[/\\\\]"),
        (r"\*", r"[^/\\\\]*"),
        (r"\?", r"[^/\\\\]"),
        (r"\[.*?\]", r"\g<0>"),
        (r"[a-zA-Z0-9_-]+", r"\g<0>"),
        (r"[\[\]]", None),
        (r"[\s\S]", r"\\\g<0>"),
    )
)


def glob_regex(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching a whole path against any of ``patterns``; None for no patterns."""
    parts = [_glob_part(pattern) for pattern in patterns]
    if not parts:
        return None
    return re.compile("(?:" + "|".join(f"(?:{part})" for part in parts) + r")\Z")


def _glob_part(pattern: str) -> str:
    pattern = pattern.replace("\\", "/")
    if "/" not in pattern:
        pattern = f"**/{pattern}"
    regex = []
    position = 0
    while position < len(pattern):
        for token, replacement in _TOKENS:
            if found := token.match(pattern, pos=position):
                if replacement is None:
                    raise ValueError(f"file pattern can't include {found[0]!r}")
                regex.append(found.expand(replacement))
                position = found.end()
                break
    return "".join(regex)


def absolute_patterns(patterns: Iterable[str]) -> list[str]:
    """Each pattern, and (unless it starts with a wildcard) its absolute, resolved form."""
    prepared = []
    for pattern in patterns:
        prepared.append(pattern)
        if not pattern.startswith(("*", "?")):
            prepared.append(os.path.abspath(os.path.realpath(pattern)))
    return prepared


def source_name(filename: str) -> str:
    """The source file a code object's file name stands for (``x.pyc`` is ``x.py``)."""
    if filename.endswith((".pyc", ".pyo")):
        return filename[:-1]
    return filename


class Undecided(Exception):  # noqa: N818 - a state, not an error
    """The file's decision could not be made now (the stack or the memory ran out)."""


class Scope:
    """Which files are measured, decided as coverage.py's ``should_trace`` decides.

    Shared by the layer's two recorders: :class:`LineMonitor` (``sys.monitoring``) and
    :class:`coverage_wrapper.ctracer.TraceMonitor` (coverage.py's C tracer).
    """

    def __init__(self, include: Iterable[str], omit: Iterable[str]) -> None:
        self._include = glob_regex(absolute_patterns(include))
        self._omit = glob_regex(absolute_patterns(omit))

    def measured_name(self, filename: str, frame: FrameType | None) -> str | None:
        """The canonical name of ``filename`` if it is measured, else None.

        Asked from inside the function's own calls, nothing it raises may reach them. A
        file that cannot be named (a module whose ``__file__`` cannot be made a string, a
        name with a NUL byte) is not measured; coverage.py would raise into the program
        there. Running out of memory or of stack (the function's own depth, counted by
        3.11 in C calls too) says nothing about the file: :class:`Undecided`, for the
        caller to ask again later. (The limit is never raised for the decision: it is
        shared by every thread.)
        """
        try:
            name = self.canonical(filename, frame)
            return name if name is not None and self.measures(name) else None
        except (RecursionError, MemoryError) as error:
            raise Undecided from error
        except Exception:  # noqa: BLE001 - see above
            return None

    @staticmethod
    def canonical(filename: str, frame: FrameType | None) -> str | None:
        """The file ``filename`` (a code object's, run in ``frame``) is, as coverage.py names
        it; None for names that are not files."""
        if not filename or filename.startswith("<"):
            return None
        # A .pyc compiled elsewhere names its source where it was compiled; the
        # module's __file__ says where it was loaded from (unless it was renamed).
        dunder = frame.f_globals.get("__file__") if frame is not None else None
        if dunder and not isinstance(dunder, str):
            try:
                dunder = str(dunder)  # the function's own code: anything may happen in it
            except Exception:  # noqa: BLE001 - recursion included: no name, not measured
                return None
        if dunder:
            loaded = source_name(dunder)
            if os.path.basename(loaded) == os.path.basename(filename):
                filename = loaded
        if not filename or filename.startswith(("<", "memory:")):
            return None
        if not os.path.isabs(filename):
            for folder in [os.curdir, *sys.path]:
                candidate = os.path.join(folder, filename)
                if os.path.exists(candidate):
                    filename = candidate
                    break
        return os.path.abspath(os.path.realpath(filename))

    def measures(self, name: str) -> bool:
        """True when the canonical name ``name`` is measured."""
        if self._include is not None and not self._include.match(name):
            return False
        if self._omit is not None and self._omit.match(name):
            return False
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


class LineMonitor:
    """Records which lines of the measured files ran, as coverage.py's sysmon core does."""

    def __init__(self, include: Iterable[str], omit: Iterable[str]) -> None:
        self._scope = Scope(include, omit)
        # Canonical file name -> its executed lines; the callbacks add to these sets.
        self.data: dict[str, set[int]] = {}
        # A code object's file name -> its set in ``data``, or None when not measured.
        self._files: dict[str, set[int] | None] = {}
        self._lock = threading.Lock()
        self.running = False

    def start(self) -> None:
        """Start measuring; ValueError if another tool (coverage.py) holds the tool id."""
        _monitoring.use_tool_id(TOOL_ID, TOOL_NAME)
        self._register()
        _monitoring.set_events(TOOL_ID, _monitoring.events.PY_START)
        self.running = True

    def _register(self) -> None:
        events = _monitoring.events
        _monitoring.register_callback(TOOL_ID, events.PY_START, self._py_start)
        _monitoring.register_callback(TOOL_ID, events.LINE, self._line)

    def pause(self) -> None:
        """Stop recording until :meth:`resume` (code already seen keeps its LINE events
        switched on, so the callbacks go)."""
        if self.running:
            _monitoring.set_events(TOOL_ID, 0)
            events = _monitoring.events
            _monitoring.register_callback(TOOL_ID, events.PY_START, None)
            _monitoring.register_callback(TOOL_ID, events.LINE, None)
            self.running = False

    def resume(self) -> None:
        """Record again after :meth:`pause`; lines seen before may be reported again
        (sets: no harm)."""
        if not self.running:
            self._register()
            _monitoring.set_events(TOOL_ID, _monitoring.events.PY_START)
            _monitoring.restart_events()
            self.running = True

    def take(self) -> Iterator[tuple[str, set[int]]]:
        """The lines recorded since the last call, per file (removed from the live sets)."""
        for name, live in list(self.data.items()):
            if live:
                # Copy, then remove exactly what was copied: the callbacks keep adding.
                snapshot = live.copy()
                live.difference_update(snapshot)
                yield name, snapshot

    def _py_start(self, code: CodeType, offset: int) -> Any:
        if code.co_name == "__annotate__":  # 3.14's annotation functions never run lines
            return _monitoring.DISABLE
        lines = self._files.get(code.co_filename, _UNSEEN)
        if lines is _UNSEEN:
            try:
                lines = self._decide(code.co_filename, sys._getframe(1))
            except Undecided:
                return None  # PY_START stays on for this code: decided when it runs again
        if lines is not None:
            _monitoring.set_local_events(TOOL_ID, code, _monitoring.events.LINE)
        return _monitoring.DISABLE

    def _line(self, code: CodeType, line: int) -> Any:
        lines = self._files.get(code.co_filename)
        if lines is not None:
            lines.add(line)
        return _monitoring.DISABLE

    def _decide(self, filename: str, frame: FrameType | None) -> set[int] | None:
        """The set to record ``filename``'s lines in, or None if it is not measured."""
        name = self._scope.measured_name(filename, frame)
        lines = None
        if name is not None:
            with self._lock:
                lines = self.data.setdefault(name, set())
        self._files[filename] = lines
        return lines


_UNSEEN: Any = object()
