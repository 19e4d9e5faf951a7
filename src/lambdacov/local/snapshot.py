"""SnapStart in the local Lambda: init once, then restore environments from that one state.

Lambda initialises a SnapStart version once, runs the runtime's before-snapshot
hooks, and snapshots the microVM, memory and disk. Every execution environment
after that is restored from the snapshot, so whatever init made (an id, a
random number, a file in /tmp) is the same in all of them until the
after-restore hooks run.

The emulator does the same for the runtime with ``fork``. Where awslambdaric
asks for its restore, the emulated bootstrap (:func:`~lambdacov.local.bootstrap.serve_restores`)
keeps the initialised process as a *template*. For each environment the
emulator restores, the template forks a runtime process with its memory, which
asks for its restore on that environment's Runtime API, at the same address (it
is in the snapshot). The emulator copies /tmp back from the copy it took at the
snapshot.

What a fork cannot give: the extensions' state (a process cannot be forked from
outside), so each restored environment starts its extensions afresh and they
register again; and threads the function started at init, which a fork leaves
behind (Lambda's snapshot keeps them).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time

from lambdacov.local.bootstrap import RESTORE_FD
from lambdacov.local.process import ManagedProcess

# The longest line the template sends ("exit PID STATUS").
_MAX_LINE = 64


class RuntimeTemplate:
    """The emulator's end of a SnapStart runtime: the process that ran init, and what it says.

    Create it before the runtime starts: :attr:`environ` and :attr:`pass_fds` go to
    the runtime's process, then :meth:`adopt` takes the process. Thread-safe.
    """

    def __init__(self) -> None:
        self._socket, self._theirs = socket.socketpair()
        self._socket.setblocking(False)
        self._lock = threading.Lock()
        self._buffer = b""
        self._snapshotted = False
        self._pids: list[int] = []
        self._exits: dict[int, int] = {}
        self._gone = False
        self.process: ManagedProcess | None = None

    @property
    def environ(self) -> dict[str, str]:
        """The variable telling the emulated bootstrap which descriptor to serve on."""
        return {RESTORE_FD: str(self._theirs.fileno())}

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._theirs.fileno(),)

    def adopt(self, process: ManagedProcess) -> None:
        """The runtime started with :attr:`environ`: its end is its own now."""
        self.process = process
        self._theirs.close()

    @property
    def snapshotted(self) -> bool:
        """True once init and the before-snapshot hooks have run (the runtime waits to be
        forked)."""
        self._poll(0)
        return self._snapshotted

    @property
    def alive(self) -> bool:
        """True while the template can fork restored runtimes."""
        self._poll(0)
        return (
            self._snapshotted
            and not self._gone
            and self.process is not None
            and self.process.running
        )

    def restore(self, timeout: float) -> RestoredRuntime | None:
        """Fork a restored runtime; None if the template did not answer in ``timeout``."""
        known = len(self._pids)
        with contextlib.suppress(OSError):
            self._socket.sendall(b"restore\n")
        deadline = time.monotonic() + timeout
        while len(self._pids) == known and not self._gone:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._poll(remaining)
        if len(self._pids) == known:
            return None
        return RestoredRuntime(self, self._pids[known])

    def exit_code(self, pid: int) -> int | None:
        """The exit status of the restored runtime ``pid`` (negative for a signal), or None
        while it runs. A runtime whose template died is killed and counts as killed."""
        self._poll(0)
        code = self._exits.get(pid)
        if code is None and (self._gone or (self.process is not None and not self.process.running)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            code = self._exits.setdefault(pid, -signal.SIGKILL)
        return code

    def close(self) -> None:
        """End the template (it exits when its socket closes) and collect its output."""
        with contextlib.suppress(OSError):
            self._socket.close()
        with contextlib.suppress(OSError):
            self._theirs.close()
        if self.process is not None:
            self.process.wait(1.0)
            self.process.kill()

    def _poll(self, timeout: float) -> None:
        """Read what the template said, waiting up to ``timeout`` seconds for something."""
        with self._lock:
            if self._gone:
                return
            with contextlib.suppress(OSError, ValueError):
                readable, _, _ = select.select([self._socket], [], [], max(timeout, 0))
                if not readable:
                    return
            while True:
                try:
                    data = self._socket.recv(4096)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    self._gone = True
                    break
                self._buffer += data
            *lines, self._buffer = self._buffer.split(b"\n")
            self._buffer = self._buffer[-_MAX_LINE:]
            for line in lines:
                self._heard(line.decode("ascii", errors="replace").split())

    def _heard(self, words: list[str]) -> None:
        match words:
            case ["snapshot"]:
                self._snapshotted = True
            case [pid] if pid.isdigit():
                self._pids.append(int(pid))
            case ["exit", pid, code] if pid.isdigit():
                with contextlib.suppress(ValueError):
                    self._exits[int(pid)] = int(code)


class RestoredRuntime:
    """A runtime process forked from the template: a process of one restored environment.

    It is not the emulator's child (the template reaps it), but it is frozen,
    signalled and killed as a :class:`~lambdacov.local.process.ManagedProcess` is,
    as a process group of its own. Its output goes to the template's pipes,
    collected as the runtime's.
    """

    def __init__(self, template: RuntimeTemplate, pid: int) -> None:
        self.name = "runtime"
        self._template = template
        self._pid = pid

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        return self._pid

    @property
    def exit_code(self) -> int | None:
        """The exit status (negative for a signal), or None while it runs."""
        return self._template.exit_code(self._pid)

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def signal_group(self, signum: signal.Signals) -> None:
        # Only while it runs: the template keeps an exited runtime unreaped until the
        # next restore, so its pid cannot be another process's meanwhile.
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signum)

    def signal(self, signum: signal.Signals) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._pid, signum)

    def freeze(self) -> None:
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_group(signal.SIGCONT)

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the process to exit."""
        deadline = time.monotonic() + timeout
        while self.running and (remaining := deadline - time.monotonic()) > 0:
            self._template._poll(min(remaining, 0.1))

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.wait(5.0)

    def __repr__(self) -> str:
        return f"RestoredRuntime(pid={self.pid}, exit_code={self.exit_code})"
