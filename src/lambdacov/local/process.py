"""Processes of an emulated execution environment and the lines they log.

Every process starts in its own session (so its process group includes any
children it forks), can be frozen and thawed as a group the way Lambda freezes
an environment between invocations, and has its stdout and stderr collected
line by line, tagged with the process's name, in the order they arrive.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_READ_SIZE = 65536


@dataclass(frozen=True)
class LogLine:
    """One line written by a process of the environment (or by the emulator itself).

    ``source`` names the writer: ``runtime``, ``extension:<file name>``, or
    ``lambda`` for the platform's own START/END/REPORT lines.
    """

    source: str
    stream: str
    text: str
    timestamp: float

    def __str__(self) -> str:
        return f"[{self.source}] {self.text}"


LogCallback = Callable[[LogLine], None]


class LogCollector:
    """Keeps every line logged in the environment, in arrival order.

    Reads happen under one lock, both in the reader threads and in
    :meth:`drain`, so after ``drain()`` returns every byte a (frozen or exited)
    process wrote before the call is in :attr:`lines`.
    """

    def __init__(self, on_line: LogCallback | None = None) -> None:
        self._lock = threading.RLock()
        self._lines: list[LogLine] = []
        self._readers: list[_PipeReader] = []
        self._on_line = on_line

    def add(self, source: str, stream: str, text: str) -> None:
        """Record one line (without its newline) and pass it to the callback."""
        line = LogLine(source, stream, text, time.time())
        with self._lock:
            self._lines.append(line)
        if self._on_line is not None:
            self._on_line(line)

    def mark(self) -> int:
        """Return a position to pass to :meth:`since` later."""
        with self._lock:
            return len(self._lines)

    def since(self, mark: int) -> tuple[LogLine, ...]:
        """Return the lines recorded after ``mark``."""
        with self._lock:
            return tuple(self._lines[mark:])

    @property
    def lines(self) -> tuple[LogLine, ...]:
        """Every line recorded so far."""
        return self.since(0)

    def drain(self) -> None:
        """Read everything already written to any pipe, including unterminated lines."""
        with self._lock:
            for reader in list(self._readers):
                reader.read_available(flush_partial=True)

    def attach(self, source: str, stdout: int, stderr: int) -> _PipeReader:
        """Start collecting the lines of a process's two pipes."""
        reader = _PipeReader(self._lock, self.add, source, {stdout: "stdout", stderr: "stderr"})
        with self._lock:
            self._readers.append(reader)
        reader.start()
        return reader

    def detach(self, reader: _PipeReader) -> None:
        """Stop a reader after collecting what its pipes still hold."""
        with self._lock:
            reader.read_available(flush_partial=True)
            if reader in self._readers:
                self._readers.remove(reader)
        reader.stop()


class _PipeReader:
    """A thread splitting a process's pipes into lines for a :class:`LogCollector`."""

    def __init__(
        self,
        lock: threading.RLock,
        add: Callable[[str, str, str], None],
        source: str,
        fds: dict[int, str],
    ) -> None:
        self._lock = lock
        self._add = add
        self._source = source
        self._streams = dict(fds)
        self._partial = dict.fromkeys(fds, b"")
        self._open = set(fds)
        self._stopping = threading.Event()
        for fd in fds:
            os.set_blocking(fd, False)
        self._thread = threading.Thread(
            target=self._run, name=f"lambdacov-log-{source}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        for fd in list(self._streams):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._open.clear()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for fd in self._open:
                selector.register(fd, selectors.EVENT_READ)
            # Poll with a timeout: a grandchild may hold a pipe open after its
            # parent is killed, and stop() must still end this thread.
            while not self._stopping.is_set():
                with self._lock:
                    for fd in {key.fd for key in selector.get_map().values()} - self._open:
                        selector.unregister(fd)
                    if not self._open:
                        return
                if selector.select(timeout=0.1):
                    self.read_available(flush_partial=False)

    def read_available(self, *, flush_partial: bool) -> None:
        """Read what is in the pipes now, without blocking (caller may hold the lock)."""
        with self._lock:
            for fd in list(self._open):
                self._read_fd(fd, flush_partial=flush_partial)

    def _read_fd(self, fd: int, *, flush_partial: bool) -> None:
        while True:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._open.discard(fd)
                flush_partial = True
                break
            *lines, self._partial[fd] = (self._partial[fd] + data).split(b"\n")
            for line in lines:
                self._emit(fd, line)
        if flush_partial and self._partial[fd]:
            self._emit(fd, self._partial[fd])
            self._partial[fd] = b""

    def _emit(self, fd: int, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        self._add(self._source, self._streams[fd], text)


class EnvironmentProcess(Protocol):
    """What the emulator does with a process of an environment: a :class:`ManagedProcess`,
    or a SnapStart runtime forked from its template (:mod:`lambdacov.local.snapshot`)."""

    name: str

    @property
    def pid(self) -> int: ...

    @property
    def exit_code(self) -> int | None: ...

    @property
    def running(self) -> bool: ...

    def signal_group(self, signum: signal.Signals) -> None: ...

    def signal(self, signum: signal.Signals) -> None: ...

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def wait(self, timeout: float) -> None: ...

    def kill(self) -> None: ...


class ManagedProcess:
    """A child process in its own process group, with its output collected.

    Signals go to the whole group, so a frozen extension's helper processes
    freeze with it and a kill leaves nothing behind.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        logs: LogCollector,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.name = name
        self._logs = logs
        self._popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
        assert self._popen.stdout is not None
        assert self._popen.stderr is not None
        # The reader owns the descriptors from here on (it closes them on stop).
        stdout_fd = os.dup(self._popen.stdout.fileno())
        stderr_fd = os.dup(self._popen.stderr.fileno())
        self._popen.stdout.close()
        self._popen.stderr.close()
        self._reader = logs.attach(name, stdout_fd, stderr_fd)
        self._released = False

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        return self._popen.pid

    @property
    def exit_code(self) -> int | None:
        """The exit status (negative for a signal), or None while it runs."""
        return self._popen.poll()

    @property
    def running(self) -> bool:
        """True until the process has exited."""
        return self.exit_code is None

    def signal_group(self, signum: signal.Signals) -> None:
        """Send a signal to the process's whole group; a group that is gone is ignored."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signum)

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal to the process itself (as Lambda sends SIGTERM to the runtime)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signum)

    def freeze(self) -> None:
        """Stop the whole group, as Lambda freezes an idle environment."""
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume the whole group."""
        self.signal_group(signal.SIGCONT)

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the process to exit."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=timeout)

    def kill(self) -> None:
        """Kill the whole group, reap the process and collect its last output."""
        if self._released:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=5)
        self._logs.detach(self._reader)
        self._released = True

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, exit_code={self.exit_code})"
